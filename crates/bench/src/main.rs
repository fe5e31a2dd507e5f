//! `ferrocore-bench`: a load generator for MQTT brokers over mutual TLS (ferrocore,
//! Mosquitto, or any MQTT 3.1.1 broker that accepts the given client certificate)
//! and for ferrocore's control plane. Bounded in time and count, loopback by
//! default, and cheap on CPU (batched writes, one task per connection), because
//! it shares the machine with the broker it measures.
//!
//! Topics follow a walled-garden layout: publisher `<prefix>pub-<i>` writes to
//! `bench/<its client id>/...`, so a per-client policy or ACL can govern it.

mod client;
mod flows;
mod modes;
mod report;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ferrocore_mqtt::QoS;

use crate::client::Target;
use crate::flows::FlowPlan;

#[derive(Parser)]
#[command(name = "ferrocore-bench", about = "Load generator for MQTT brokers over mutual TLS")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N publishers → 1 subscriber (`bench/+/in`).
    FanIn {
        #[command(flatten)]
        flow: FlowArgs,
        #[arg(long, default_value_t = 10)]
        publishers: usize,
    },
    /// 1 publisher → N subscribers of its topic.
    FanOut {
        #[command(flatten)]
        flow: FlowArgs,
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
    },
    /// N publisher → subscriber pairs, one topic each.
    Pairs {
        #[command(flatten)]
        flow: FlowArgs,
        #[arg(long, default_value_t = 100)]
        pairs: usize,
    },
    /// Opens idle connections and reports the broker's memory per connection.
    Idle {
        #[command(flatten)]
        broker: BrokerArgs,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The broker's process id, to read its RSS from /proc.
        #[arg(long)]
        broker_pid: u32,
        /// Seconds to hold the connections before measuring.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// Full TLS handshakes plus CONNECT/CONNACK per second.
    Handshakes {
        #[command(flatten)]
        broker: BrokerArgs,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Durable shadow updates over MQTT (ferrocore): devices `<prefix>shadow-<i>`.
    Shadow {
        #[command(flatten)]
        broker: BrokerArgs,
        #[arg(long, default_value_t = 50)]
        devices: usize,
        /// Updates each device keeps outstanding.
        #[arg(long, default_value_t = 4)]
        inflight: usize,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// SigV4-signed CreateThing calls per second against an IoT API endpoint.
    CreateThings {
        #[arg(long, default_value = "http://127.0.0.1:4566")]
        endpoint: String,
        #[arg(long, default_value = "bench-")]
        prefix: String,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Stop once this many things are created (within the duration).
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Args, Clone)]
struct BrokerArgs {
    #[arg(long, default_value = "127.0.0.1:8883")]
    addr: SocketAddr,
    /// The CA that signed the broker's certificate.
    #[arg(long)]
    ca: std::path::PathBuf,
    /// The client certificate and key every connection presents.
    #[arg(long)]
    cert: std::path::PathBuf,
    #[arg(long)]
    key: std::path::PathBuf,
    /// Client ids are `<prefix>pub-<i>`, `<prefix>sub-<i>`, ...
    #[arg(long, default_value = "bench-")]
    prefix: String,
    /// Subscribers connect to these addresses in turn (other nodes of a cluster,
    /// comma-separated); default: `--addr`. Publishers always use `--addr`.
    #[arg(long, value_delimiter = ',')]
    subscriber_addr: Vec<SocketAddr>,
}

#[derive(Args, Clone)]
struct FlowArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    #[arg(long, default_value_t = 100)]
    payload: usize,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Total publishes per second; as fast as possible when omitted.
    #[arg(long)]
    rate: Option<f64>,
}

impl BrokerArgs {
    fn target(&self) -> anyhow::Result<Target> {
        let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        Target::new(self.addr, &read(&self.ca)?, &read(&self.cert)?, &read(&self.key)?)
    }

    /// Where the flow's publishers and, in turn, its subscribers connect.
    fn targets(&self) -> anyhow::Result<(Target, Vec<Target>)> {
        let target = self.target()?;
        let subscribers = match self.subscriber_addr.as_slice() {
            [] => vec![target.clone()],
            addrs => addrs.iter().map(|addr| Target { addr: *addr, ..target.clone() }).collect(),
        };
        Ok((target, subscribers))
    }
}

impl FlowArgs {
    fn plan(
        &self,
        mode: &'static str,
        publishers: Vec<(String, String)>,
        subscribers: Vec<(String, String)>,
    ) -> FlowPlan {
        FlowPlan {
            mode,
            publishers,
            subscribers,
            qos: if self.qos == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce },
            payload_bytes: self.payload,
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
            rate: self.rate,
        }
    }
}

fn main() -> anyhow::Result<()> {
    // One crypto provider for every TLS client in the process (reqwest's included): aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    // Two workers: the generator must leave the other cores to the broker.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let result = match cli.mode {
            Mode::FanIn { flow, publishers } => {
                let p = &flow.broker.prefix;
                let pubs = (0..publishers).map(|i| (format!("{p}pub-{i}"), format!("bench/{p}pub-{i}/in"))).collect();
                let (publish_to, subscribe_to) = flow.broker.targets()?;
                let plan = flow.plan("fan-in", pubs, vec![(format!("{p}sub-0"), "bench/+/in".into())]);
                flows::run(&publish_to, &subscribe_to, plan).await?
            }
            Mode::FanOut { flow, subscribers } => {
                let p = &flow.broker.prefix;
                let topic = format!("bench/{p}pub-0/out");
                let subs = (0..subscribers).map(|i| (format!("{p}sub-{i}"), topic.clone())).collect();
                let (publish_to, subscribe_to) = flow.broker.targets()?;
                flows::run(
                    &publish_to,
                    &subscribe_to,
                    flow.plan("fan-out", vec![(format!("{p}pub-0"), topic.clone())], subs),
                )
                .await?
            }
            Mode::Pairs { flow, pairs } => {
                let p = &flow.broker.prefix;
                let pubs = (0..pairs).map(|i| (format!("{p}pub-{i}"), format!("bench/{p}pub-{i}/pair"))).collect();
                let subs = (0..pairs).map(|i| (format!("{p}sub-{i}"), format!("bench/{p}pub-{i}/pair"))).collect();
                let (publish_to, subscribe_to) = flow.broker.targets()?;
                flows::run(&publish_to, &subscribe_to, flow.plan("pairs", pubs, subs)).await?
            }
            Mode::Idle { broker, connections, concurrency, broker_pid, hold } => {
                modes::idle(
                    &broker.target()?,
                    &broker.prefix,
                    connections,
                    concurrency,
                    broker_pid,
                    Duration::from_secs_f64(hold),
                )
                .await?
            }
            Mode::Handshakes { broker, concurrency, duration } => {
                modes::handshakes(&broker.target()?, &broker.prefix, concurrency, Duration::from_secs_f64(duration))
                    .await?
            }
            Mode::Shadow { broker, devices, inflight, warmup, duration } => {
                let (warmup, duration) = (Duration::from_secs_f64(warmup), Duration::from_secs_f64(duration));
                modes::shadow(&broker.target()?, &broker.prefix, devices, inflight, warmup, duration).await?
            }
            Mode::CreateThings { endpoint, prefix, concurrency, duration, count } => {
                let duration = Duration::from_secs_f64(duration);
                modes::create_things(&endpoint, &prefix, concurrency, duration, count).await?
            }
        };
        report::emit(result);
        Ok(())
    })
}
