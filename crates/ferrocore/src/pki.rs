//! The server PKI: a root CA (it also signs the device certificates ferrocore
//! issues) and the TLS certificate of the device endpoints, reissued when the
//! configured names change or it nears its end.
//!
//! It is kept in the store (one `Setting` record), so every node sharing a store
//! serves the same CA and server certificate: the first node to start makes them
//! (from its data directory's files when it has some, as a data directory from an
//! earlier release does) and the others load them. The files in `<data dir>/pki/` are
//! written from the store, for the tools that read them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ferrocore_pki::{Issuer, parse_certificate_pem};
use ferrocore_store::{Collection, Expect, RecordStore, StoreError, Write};
use serde::{Deserialize, Serialize};

use crate::files::write_file;
use crate::unix_now as now;

/// The store record of the server PKI (private keys included: the store is as
/// trusted as the data directory).
const PKI_RECORD: &str = "server_pki";
/// Starts that may race to make or renew the record before one gives up.
const ATTEMPTS: usize = 5;
/// A server certificate this close to its end is reissued.
const RENEW_BEFORE_SECS: i64 = 30 * 86_400;

pub struct ServerPki {
    pub issuer: Issuer,
    pub ca_pem: String,
    /// The TLS certificate chain and key the device gateway serves.
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

#[derive(Serialize, Deserialize)]
struct StoredPki {
    ca_pem: String,
    ca_key_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
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
    pub async fn load_or_create(
        data_dir: &Path,
        names: &[String],
        supplied: Option<SuppliedTls>,
        store: &dyn RecordStore,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let shared = shared_pki(&dir, names, store).await?;
        write_file(&dir.join("ca.key"), &shared.ca_key_pem, true)?;
        write_file(&dir.join("ca.pem"), &shared.ca_pem, false)?;
        write_file(&dir.join("server.key"), &shared.server_key_pem, true)?;
        write_file(&dir.join("server.pem"), &shared.server_cert_pem, false)?;
        let issuer = Issuer::from_pem(&shared.ca_pem, &shared.ca_key_pem).context("loading the server CA")?;
        let (server_cert_pem, server_key_pem) = match supplied {
            Some(tls) => (read(&tls.cert_file)?, read(&tls.key_file)?),
            None => (shared.server_cert_pem, shared.server_key_pem),
        };
        if parse_certificate_pem(&server_cert_pem).is_err() {
            bail!("the server TLS certificate is not a valid PEM certificate");
        }
        Ok(Self { issuer, ca_pem: shared.ca_pem, server_cert_pem, server_key_pem })
    }
}

/// The store's PKI, made or renewed by this node when needed. A node that loses a
/// race to another takes the winner's.
async fn shared_pki(dir: &Path, names: &[String], store: &dyn RecordStore) -> anyhow::Result<StoredPki> {
    for _ in 0..ATTEMPTS {
        let (mut pki, expect) = match store.get(Collection::Setting, PKI_RECORD).await? {
            Some(record) => {
                let pki: StoredPki = serde_json::from_slice(&record.body).context("reading the stored server PKI")?;
                (pki, Expect::Revision(record.revision))
            }
            None => (local_pki(dir)?, Expect::Absent),
        };
        let renewed = renew_server_certificate(&mut pki, names)?;
        if expect == Expect::Absent || renewed {
            let body = serde_json::to_vec(&pki)?;
            match store.commit(vec![Write::put(Collection::Setting, PKI_RECORD, expect, body)]).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err).context("storing the server PKI"),
            }
        }
        return Ok(pki);
    }
    bail!("the server PKI in the store kept changing while this node started")
}

/// The PKI this data directory has (a CA made by an earlier release is kept), or a new CA.
fn local_pki(dir: &Path) -> anyhow::Result<StoredPki> {
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (ca_pem, ca_key_pem) = if ca_path.exists() {
        (read(&ca_path)?, read(&ca_key_path)?)
    } else {
        let issuer = Issuer::new_root("ferrocore root CA", "ferrocore", now()).context("creating the server CA")?;
        tracing::info!("created the server root CA");
        (issuer.certificate_pem().to_string(), issuer.key_pem())
    };
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    let (server_cert_pem, server_key_pem) = match cert_path.exists() && key_path.exists() {
        true => (read(&cert_path)?, read(&key_path)?),
        false => (String::new(), String::new()),
    };
    Ok(StoredPki { ca_pem, ca_key_pem, server_cert_pem, server_key_pem })
}

/// Reissues the server certificate unless it is the CA's, covers every name and is
/// not near its end; a reissued one keeps the names it had, so nodes configured with
/// different names converge on one certificate for all of them.
fn renew_server_certificate(pki: &mut StoredPki, names: &[String]) -> anyhow::Result<bool> {
    let ca = parse_certificate_pem(&pki.ca_pem).context("reading the server CA")?;
    let current = parse_certificate_pem(&pki.server_cert_pem).ok().filter(|cert| cert.is_signed_by(&ca));
    let held: Vec<String> = current
        .as_ref()
        .map(|cert| cert.subject_alternative_names.iter().map(|(_, value)| value.clone()).collect())
        .unwrap_or_default();
    let covered = names.iter().all(|name| held.contains(name));
    if current.is_some_and(|cert| cert.not_after > now() + RENEW_BEFORE_SECS) && covered {
        return Ok(false);
    }
    let missing: Vec<String> = names.iter().filter(|name| !held.contains(name)).cloned().collect();
    let mut wanted = held;
    wanted.extend(missing);
    let issuer = Issuer::from_pem(&pki.ca_pem, &pki.ca_key_pem).context("loading the server CA")?;
    let issued = issuer.issue_server(&wanted, now()).context("issuing the server certificate")?;
    tracing::info!(names = ?wanted, "issued the server TLS certificate");
    pki.server_cert_pem = issued.certificate_pem;
    pki.server_key_pem = issued.private_key_pem;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans(pem: &str) -> Vec<String> {
        parse_certificate_pem(pem).unwrap().subject_alternative_names.into_iter().map(|(_, v)| v).collect()
    }

    #[test]
    fn the_server_certificate_is_reissued_for_everyones_names_and_only_when_needed() {
        let issuer = Issuer::new_root("test CA", "ferrocore", now()).unwrap();
        let mut pki = StoredPki {
            ca_pem: issuer.certificate_pem().to_string(),
            ca_key_pem: issuer.key_pem(),
            server_cert_pem: String::new(),
            server_key_pem: String::new(),
        };
        let node_a = ["localhost".to_string(), "a.example".to_string()];
        assert!(renew_server_certificate(&mut pki, &node_a).unwrap(), "none yet: issued");
        let first = pki.server_cert_pem.clone();
        assert!(!renew_server_certificate(&mut pki, &node_a).unwrap(), "covered and fresh: kept");
        assert_eq!(pki.server_cert_pem, first);
        // Another node with another name: one certificate for both.
        let node_b = ["localhost".to_string(), "b.example".to_string()];
        assert!(renew_server_certificate(&mut pki, &node_b).unwrap());
        let both = sans(&pki.server_cert_pem);
        assert!(["localhost", "a.example", "b.example"].iter().all(|n| both.contains(&n.to_string())), "{both:?}");
        assert!(!renew_server_certificate(&mut pki, &node_a).unwrap(), "node a is covered too");
        // A certificate another CA signed is replaced.
        let stranger = Issuer::new_root("other CA", "ferrocore", now()).unwrap();
        pki.server_cert_pem = stranger.issue_server(&node_a, now()).unwrap().certificate_pem;
        assert!(renew_server_certificate(&mut pki, &node_a).unwrap());
        let ca = parse_certificate_pem(&pki.ca_pem).unwrap();
        assert!(parse_certificate_pem(&pki.server_cert_pem).unwrap().is_signed_by(&ca));
    }
}
