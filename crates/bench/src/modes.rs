//! The non-flow modes: idle connections (broker memory per connection), TLS +
//! MQTT handshakes, durable shadow updates, and the control plane's CreateThing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use ferrocore_mqtt::{Packet, QoS};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::client::Target;
use crate::report::{histogram, latency, now_micros};

/// Resident memory of a process, in bytes, from /proc.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kib: u64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kib * 1024)
}

/// Opens `count` connections (`concurrency` at a time), holds them, and reads the
/// broker's RSS growth per connection.
pub async fn idle(
    target: &Target,
    prefix: &str,
    count: usize,
    concurrency: usize,
    broker_pid: u32,
    hold: Duration,
) -> anyhow::Result<Value> {
    let before = rss_bytes(broker_pid)?;
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut opening = Vec::with_capacity(count);
    for i in 0..count {
        let (target, gate, client_id) = (target.clone(), gate.clone(), format!("{prefix}idle-{i}"));
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            target.connect(&client_id).await
        }));
    }
    let mut connections = Vec::with_capacity(count);
    let mut failed = 0usize;
    for task in opening {
        match task.await? {
            Ok(connection) => connections.push(connection),
            Err(err) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("idle: a connection failed: {err:#}");
                }
            }
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let after = rss_bytes(broker_pid)?;
    let open = connections.len();
    drop(connections);
    let per_connection = after.saturating_sub(before) as f64 / open.max(1) as f64;
    Ok(json!({
        "mode": "idle",
        "unit": "connections",
        "connections": open,
        "failed": failed,
        "broker_rss_before": before,
        "broker_rss_after": after,
        "bytes_per_connection": per_connection,
        "seconds": connect_seconds,
        "rate_per_sec": open as f64 / connect_seconds,
    }))
}

type Worker = tokio::task::JoinHandle<anyhow::Result<Histogram<u64>>>;

/// Lets the workers run for `duration`, then stops them; answers what they
/// completed in that time, the seconds measured and their merged latencies.
async fn run_workers(
    duration: Duration,
    done: &AtomicU64,
    stop: &AtomicBool,
    workers: Vec<Worker>,
) -> anyhow::Result<(u64, f64, Histogram<u64>)> {
    run_workers_until(duration, None, done, stop, workers).await
}

/// [`run_workers`], ending early once `count` operations are done.
async fn run_workers_until(
    duration: Duration,
    count: Option<u64>,
    done: &AtomicU64,
    stop: &AtomicBool,
    workers: Vec<Worker>,
) -> anyhow::Result<(u64, f64, Histogram<u64>)> {
    let started = Instant::now();
    match count {
        None => tokio::time::sleep(duration).await,
        Some(count) => {
            while started.elapsed() < duration && done.load(Ordering::Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let completed = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut merged = histogram();
    for worker in workers {
        merged.add(&worker.await??).ok();
    }
    Ok((completed, elapsed, merged))
}

/// Full TLS handshakes with CONNECT/CONNACK, `concurrency` at a time, for `duration`.
pub async fn handshakes(
    target: &Target,
    prefix: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers: Vec<Worker> = Vec::new();
    for worker in 0..concurrency {
        let (target, done, failed, stop) = (target.clone(), done.clone(), failed.clone(), stop.clone());
        let client_id = format!("{prefix}hs-{worker}");
        workers.push(tokio::spawn(async move {
            let mut samples = histogram();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match target.connect(&client_id).await {
                    Ok(mut connection) => {
                        samples.record(started.elapsed().as_micros().max(1) as u64).ok();
                        done.fetch_add(1, Ordering::Relaxed);
                        connection.queue(&Packet::Disconnect(ferrocore_mqtt::Disconnect {
                            reason: ferrocore_mqtt::ReasonCode::Success,
                            properties: Default::default(),
                        }));
                        let _ = connection.flush().await;
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(samples)
        }));
    }
    let (completed, elapsed, merged) = run_workers(duration, &done, &stop, workers).await?;
    Ok(json!({
        "mode": "handshakes",
        "unit": "handshakes",
        "concurrency": concurrency,
        "completed": completed,
        "failed": failed.load(Ordering::Relaxed),
        "seconds": elapsed,
        "rate_per_sec": completed as f64 / elapsed,
        "latency": latency(&merged),
    }))
}

/// Devices `<prefix>shadow-<i>` report to their classic shadow over MQTT with
/// `inflight` updates outstanding each; counts `update/accepted` per second and
/// checks that every acknowledged update was accepted exactly once, in order.
pub async fn shadow(
    target: &Target,
    prefix: &str,
    devices: usize,
    inflight: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Value> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..devices {
        let thing = format!("{prefix}shadow-{i}");
        let mut connection = target.connect(&thing).await?;
        let base = format!("$aws/things/{thing}/shadow/update");
        connection.subscribe(&format!("{base}/accepted"), QoS::AtMostOnce).await?;
        connection.subscribe(&format!("{base}/rejected"), QoS::AtMostOnce).await?;
        let (measuring, stop, accepted) = (measuring.clone(), stop.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = histogram();
            let mut outstanding = 0usize;
            let (mut sent, mut seen, mut rejected) = (0u64, 0u64, 0u64);
            // The shadow may exist from an earlier run: versions go on from wherever it was.
            let mut last_version: Option<u64> = None;
            let mut packet_id: u16 = 0;
            let mut packets = Vec::new();
            let (mut reader, mut writer) = connection.split();
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                if stopping && outstanding == 0 {
                    break;
                }
                if !stopping && outstanding < inflight {
                    while outstanding < inflight {
                        sent += 1;
                        packet_id = packet_id.checked_add(1).unwrap_or(1);
                        let update = format!(r#"{{"state":{{"reported":{{"n":{sent},"t":{}}}}}}}"#, now_micros());
                        writer.queue_publish(&base, Bytes::from(update), Some(packet_id));
                        outstanding += 1;
                    }
                    writer.flush().await?;
                }
                match tokio::time::timeout(Duration::from_secs(5), reader.read_batch(&mut packets)).await {
                    Err(_) if stopping => break,
                    Err(_) => bail!("{base}: no answer in 5 s"),
                    Ok(result) => result?,
                }
                for packet in packets.drain(..) {
                    let Packet::Publish(publish) = packet else {
                        continue;
                    };
                    outstanding = outstanding.saturating_sub(1);
                    if publish.topic.ends_with("/rejected") {
                        rejected += 1;
                        continue;
                    }
                    let document: Value = serde_json::from_slice(&publish.payload)?;
                    let version = document["version"].as_u64().unwrap_or(0);
                    if let Some(last) = last_version
                        && version != last + 1
                    {
                        bail!("{base}: version {version} after {last}");
                    }
                    last_version = Some(version);
                    seen += 1;
                    if measuring.load(Ordering::Relaxed) {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        if let Some(stamp) = document.pointer("/state/reported/t").and_then(Value::as_u64) {
                            samples.record(now_micros().saturating_sub(stamp).max(1)).ok();
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>((samples, sent, seen, rejected))
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut merged, mut sent, mut seen, mut rejected) = (histogram(), 0, 0, 0);
    for task in tasks {
        let (samples, device_sent, device_seen, device_rejected) = task.await??;
        merged.add(&samples).ok();
        sent += device_sent;
        seen += device_seen;
        rejected += device_rejected;
    }
    Ok(json!({
        "mode": "shadow",
        "unit": "updates",
        "devices": devices,
        "inflight": inflight,
        "seconds": elapsed,
        "sent": sent,
        "accepted_total": seen,
        "rejected": rejected,
        "lost": sent - seen - rejected,
        "rate_per_sec": accepted.load(Ordering::Relaxed) as f64 / elapsed,
        "latency": latency(&merged),
    }))
}

/// SigV4-signed CreateThing calls, `concurrency` at a time, for `duration`.
pub async fn create_things(
    endpoint: &str,
    prefix: &str,
    concurrency: usize,
    duration: Duration,
    count: Option<u64>,
) -> anyhow::Result<Value> {
    let url = reqwest::Url::parse(endpoint)?;
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().context("endpoint host")?),
        None => url.host_str().context("endpoint host")?.to_string(),
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers: Vec<Worker> = Vec::new();
    for worker in 0..concurrency {
        let (http, host, endpoint, done, stop) =
            (http.clone(), host.clone(), endpoint.trim_end_matches('/').to_string(), done.clone(), stop.clone());
        let prefix = prefix.to_string();
        workers.push(tokio::spawn(async move {
            let mut samples = histogram();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let path = format!("/things/{prefix}ct-{worker}-{n}");
                let body = b"{}".to_vec();
                let request = ferrocore_sigv4::Request {
                    method: "POST",
                    path: &path,
                    query: "",
                    headers: vec![("host", host.as_str()), ("content-type", "application/json")],
                    body_sha256: ferrocore_sigv4::body_sha256(&body),
                };
                let key = ferrocore_sigv4::SigningKey {
                    access_key: "test",
                    secret_key: "test",
                    region: "us-east-1",
                    service: "iot",
                };
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
                let mut builder =
                    http.post(format!("{endpoint}{path}")).header("content-type", "application/json").body(body);
                for (name, value) in ferrocore_sigv4::sign(&request, &key, now) {
                    builder = builder.header(name, value);
                }
                let started = Instant::now();
                let response = builder.send().await?;
                if !response.status().is_success() {
                    bail!("CreateThing answered {}: {}", response.status(), response.text().await.unwrap_or_default());
                }
                response.bytes().await?;
                samples.record(started.elapsed().as_micros().max(1) as u64).ok();
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(samples)
        }));
    }
    let (completed, elapsed, merged) = run_workers_until(duration, count, &done, &stop, workers).await?;
    Ok(json!({
        "mode": "create-things",
        "unit": "CreateThing",
        "concurrency": concurrency,
        "completed": completed,
        "seconds": elapsed,
        "rate_per_sec": completed as f64 / elapsed,
        "latency": latency(&merged),
    }))
}
