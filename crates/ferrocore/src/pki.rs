//! The server PKI in the data directory: a root CA made on first start (it also
//! signs the device certificates ferrocore issues) and the TLS certificate of the
//! device endpoints, reissued when the configured names change.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ferrocore_pki::{Issuer, parse_certificate_pem};

use crate::files::write_file;
use crate::unix_now as now;

pub struct ServerPki {
    pub issuer: Issuer,
    pub ca_pem: String,
    /// The TLS certificate chain and key the device gateway serves.
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Operator-supplied TLS certificate and key files, instead of the generated ones.
pub struct SuppliedTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl ServerPki {
    pub fn load_or_create(data_dir: &Path, names: &[String], supplied: Option<SuppliedTls>) -> anyhow::Result<Self> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        let issuer = if ca_path.exists() {
            Issuer::from_pem(&read(&ca_path)?, &read(&ca_key_path)?).context("loading the server CA")?
        } else {
            let issuer = Issuer::new_root("ferrocore root CA", "ferrocore", now()).context("creating the server CA")?;
            write_file(&ca_key_path, &issuer.key_pem(), true)?;
            write_file(&ca_path, issuer.certificate_pem(), false)?;
            tracing::info!(path = %ca_path.display(), "created the server root CA");
            issuer
        };
        let ca_pem = issuer.certificate_pem().to_string();

        let (server_cert_pem, server_key_pem) = match supplied {
            Some(tls) => (read(&tls.cert_file)?, read(&tls.key_file)?),
            None => {
                let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
                let current = cert_path.exists().then(|| read(&cert_path)).transpose()?;
                let fresh = current.as_deref().and_then(|pem| parse_certificate_pem(pem).ok()).is_some_and(|cert| {
                    let covered = names.iter().all(|n| cert.subject_alternative_names.iter().any(|(_, v)| v == n));
                    covered && cert.not_after > now() + 30 * 86_400
                });
                if fresh {
                    (current.unwrap_or_default(), read(&key_path)?)
                } else {
                    let issued = issuer.issue_server(names, now()).context("issuing the server certificate")?;
                    write_file(&key_path, &issued.private_key_pem, true)?;
                    write_file(&cert_path, &issued.certificate_pem, false)?;
                    tracing::info!(names = ?names, "issued the server TLS certificate");
                    (issued.certificate_pem, issued.private_key_pem)
                }
            }
        };
        if parse_certificate_pem(&server_cert_pem).is_err() {
            bail!("the server TLS certificate is not a valid PEM certificate");
        }
        Ok(Self { issuer, ca_pem, server_cert_pem, server_key_pem })
    }
}
