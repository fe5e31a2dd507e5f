//! `ferrocore shadow`: reading shadows, including the past versions ferrocore keeps
//! when `shadow_history_versions` is set (AWS keeps none).

use clap::{Args, Subcommand};

use super::client::{ApiClient, ClientArgs, label};

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Print a shadow's current document (GetThingShadow).
    Get(ShadowArgs),
    /// Print a past version of a shadow (ferrocore's shadow history).
    Version {
        #[command(flatten)]
        shadow: ShadowArgs,
        /// The version to read.
        #[arg(long)]
        version: u64,
    },
}

#[derive(Debug, Args)]
pub struct ShadowArgs {
    /// The thing the shadow belongs to.
    #[arg(long)]
    thing: String,
    /// A named shadow; the classic shadow when omitted.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

impl ShadowArgs {
    fn query(&self) -> String {
        self.name.as_deref().map(|name| format!("name={}", label(name))).unwrap_or_default()
    }
}

pub async fn run_shadow(command: ShadowCommand) -> anyhow::Result<()> {
    let (shadow, path) = match &command {
        ShadowCommand::Get(shadow) => (shadow, format!("/things/{}/shadow", label(&shadow.thing))),
        ShadowCommand::Version { shadow, version } => {
            (shadow, format!("/things/{}/shadow/versions/{version}", label(&shadow.thing)))
        }
    };
    let client = ApiClient::new(shadow.client.clone())?;
    let document = client.iot_data_get(&path, &shadow.query()).await?;
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}
