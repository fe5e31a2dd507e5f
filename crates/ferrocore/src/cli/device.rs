//! `ferrocore device create`, `ferrocore ca create` and `ferrocore ca sign`: the
//! certificate ceremonies of the seeds (Terraform with the tls provider, openssl),
//! done in one command against a running server.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use ferrocore_pki::{Issuer, parse_certificate_pem};
use serde_json::{Value, json};

use super::client::{ApiClient, ClientArgs, label};
use crate::files::write_file;
use crate::unix_now as now;

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Create a thing, a key and certificate, a walled-garden policy and both
    /// attachments, and write what a device needs to connect.
    Create {
        /// The thing name (also the MQTT client id the policy allows).
        name: String,
        /// Output directory (default: ./<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA key and certificate and register the CA (ACTIVE) with a
    /// verification certificate for the account's registration code.
    Create {
        /// The CA's common name.
        name: String,
        /// Output directory for ca.pem and ca.key (default: ./<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue a device certificate with a CA made by `ca create`, register it, and
    /// provision the thing like `device create`.
    Sign {
        /// The directory `ca create` wrote.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The thing name.
        #[arg(long)]
        thing: String,
        /// Output directory (default: ./<thing>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn step(message: &str) {
    eprintln!("  - {message}");
}

fn walled_garden(region: &str, account: &str) -> String {
    let arn = format!("arn:aws:iot:{region}:{account}");
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": format!("{arn}:client/${{iot:Connection.Thing.ThingName}}")},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": format!("{arn}:topic/$aws/things/${{iot:Connection.Thing.ThingName}}/*")},
            {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": format!("{arn}:topicfilter/$aws/things/${{iot:Connection.Thing.ThingName}}/*")},
        ]
    })
    .to_string()
}

/// A device certificate the server knows, with its key.
struct DeviceCertificate {
    id: String,
    arn: String,
    pem: String,
    private_key_pem: String,
}

/// Creates the thing, the walled-garden policy and both attachments for
/// `certificate`, and writes the device bundle to `out`.
async fn provision(client: &ApiClient, thing: &str, certificate: DeviceCertificate, out: &Path) -> anyhow::Result<()> {
    step(&format!("creating thing {thing}"));
    client.iot("POST", &format!("/things/{}", label(thing)), "", Some(json!({}))).await?;

    let policy_name = format!("{thing}-walled-garden");
    step(&format!("creating policy {policy_name}"));
    let account = client.account_id().await?;
    let document = walled_garden(client.region(), &account);
    let created = client
        .iot("POST", &format!("/policies/{}", label(&policy_name)), "", Some(json!({"policyDocument": document})))
        .await;
    if let Err(err) = created
        && !err.to_string().starts_with("ResourceAlreadyExistsException")
    {
        return Err(err);
    }
    step("attaching the policy and the thing to the certificate");
    client
        .iot("PUT", &format!("/target-policies/{}", label(&policy_name)), "", Some(json!({"target": certificate.arn})))
        .await?;
    client
        .iot_with_headers(
            "PUT",
            &format!("/things/{}/principals", label(thing)),
            "",
            &[("x-amzn-principal", &certificate.arn)],
            None,
        )
        .await?;

    let endpoint = client.iot("GET", "/endpoint", "endpointType=iot%3AData-ATS", None).await?;
    let endpoint = endpoint["endpointAddress"].as_str().unwrap_or_default().to_string();
    let health: Value = serde_json::from_str(&client.get_public("/health").await?).context("reading /health")?;
    let mqtt_port = health["listeners"]["mqtt"]
        .as_str()
        .and_then(|addr| addr.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .unwrap_or(8883);
    let ca_pem = client.get_public("/ca.pem").await?;

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_file(&out.join("ca.pem"), &ca_pem, false)?;
    write_file(&out.join("cert.pem"), &certificate.pem, false)?;
    write_file(&out.join("key.pem"), &certificate.private_key_pem, true)?;
    let info = json!({
        "thing_name": thing,
        "endpoint": endpoint,
        "mqtt_port": mqtt_port,
        "certificate_id": certificate.id,
        "certificate_arn": certificate.arn,
        "policy_name": policy_name,
    });
    write_file(&out.join("device.json"), &serde_json::to_string_pretty(&info)?, false)?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    eprintln!("wrote {}/{{ca.pem,cert.pem,key.pem,device.json}}", out.display());
    Ok(())
}

pub async fn run_device(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Create { name, out, client } => {
            let client = ApiClient::new(client)?;
            let out = out.unwrap_or_else(|| PathBuf::from(&name));
            ferrocore_model::registry::validate_name("thingName", &name).map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("provisioning device {name}");
            step("creating a key and certificate");
            let created = client.iot("POST", "/keys-and-certificate", "setAsActive=true", Some(json!({}))).await?;
            let certificate = DeviceCertificate {
                id: created["certificateId"].as_str().unwrap_or_default().to_string(),
                arn: created["certificateArn"].as_str().unwrap_or_default().to_string(),
                pem: created["certificatePem"].as_str().unwrap_or_default().to_string(),
                private_key_pem: created["keyPair"]["PrivateKey"].as_str().unwrap_or_default().to_string(),
            };
            provision(&client, &name, certificate, &out).await
        }
    }
}

pub async fn run_ca(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Create { name, out, client } => {
            let client = ApiClient::new(client)?;
            let out = out.unwrap_or_else(|| PathBuf::from(&name));
            eprintln!("creating CA {name}");
            step("generating the CA key and certificate");
            let ca = Issuer::new_root(&name, &name, now())?;
            step("proving possession of the CA key with the registration code");
            let code = client.iot("GET", "/registrationcode", "", None).await?;
            let code = code["registrationCode"].as_str().unwrap_or_default().to_string();
            let verification = ca.issue_device_ecdsa(&code, now())?;
            step("registering the CA");
            let registered = client
                .iot(
                    "POST",
                    "/cacertificate",
                    "setAsActive=true&allowAutoRegistration=false",
                    Some(json!({"caCertificate": ca.certificate_pem(), "verificationCertificate": verification.certificate_pem})),
                )
                .await?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            write_file(&out.join("ca.pem"), ca.certificate_pem(), false)?;
            write_file(&out.join("ca.key"), &ca.key_pem(), true)?;
            let info = json!({
                "ca_certificate_id": registered["certificateId"],
                "ca_certificate_arn": registered["certificateArn"],
            });
            write_file(&out.join("ca.json"), &serde_json::to_string_pretty(&info)?, false)?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            eprintln!("wrote {}/{{ca.pem,ca.key,ca.json}}", out.display());
            Ok(())
        }
        CaCommand::Sign { ca_dir, thing, out, client } => {
            let client = ApiClient::new(client)?;
            let out = out.unwrap_or_else(|| PathBuf::from(&thing));
            ferrocore_model::registry::validate_name("thingName", &thing).map_err(|e| anyhow::anyhow!("{e}"))?;
            let read = |file: &str| {
                std::fs::read_to_string(ca_dir.join(file))
                    .with_context(|| format!("reading {}", ca_dir.join(file).display()))
            };
            let (ca_pem, ca_key) = (read("ca.pem")?, read("ca.key")?);
            let ca = Issuer::from_pem(&ca_pem, &ca_key)?;
            eprintln!("issuing a certificate for {thing} with the CA in {}", ca_dir.display());
            let issued = ca.issue_device_ecdsa(&thing, now())?;
            if parse_certificate_pem(&issued.certificate_pem).is_err() {
                bail!("the issued certificate does not parse");
            }
            step("registering the certificate");
            let registered = client
                .iot(
                    "POST",
                    "/certificate/register",
                    "",
                    Some(json!({"certificatePem": issued.certificate_pem, "caCertificatePem": ca_pem, "status": "ACTIVE"})),
                )
                .await?;
            let certificate = DeviceCertificate {
                id: registered["certificateId"].as_str().unwrap_or_default().to_string(),
                arn: registered["certificateArn"].as_str().unwrap_or_default().to_string(),
                pem: issued.certificate_pem,
                private_key_pem: issued.private_key_pem,
            };
            provision(&client, &thing, certificate, &out).await
        }
    }
}
