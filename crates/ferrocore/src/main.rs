//! `ferrocore`: a self-hosted AWS IoT Core in one binary.

mod cli;
mod config;
mod files;
mod pki;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ferrocore", version, about = "A self-hosted AWS IoT Core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: the AWS API and the device gateway.
    Serve(config::ServeArgs),
    /// Provision devices on a running server.
    #[command(subcommand)]
    Device(cli::DeviceCommand),
    /// Create CAs and issue device certificates with them, on a running server.
    #[command(subcommand)]
    Ca(cli::CaCommand),
    /// Read device shadows on a running server, past versions included.
    #[command(subcommand)]
    Shadow(cli::ShadowCommand),
}

/// Seconds since the Unix epoch, for certificate validity and request signing.
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn main() -> anyhow::Result<()> {
    // One crypto provider for every TLS client in the process (reqwest's included): aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERROCORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(config::Config::load(args)?)),
        Command::Device(command) => runtime.block_on(cli::run_device(command)),
        Command::Ca(command) => runtime.block_on(cli::run_ca(command)),
        Command::Shadow(command) => runtime.block_on(cli::run_shadow(command)),
    }
}
