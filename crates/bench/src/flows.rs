//! Message flows: publishers and subscribers over mutual TLS, measured for a
//! fixed window after a warm-up. Payloads carry their send time, so every
//! delivery in the window is a latency sample.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ferrocore_mqtt::{Packet, QoS};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::client::Target;
use crate::report::{histogram, latency, now_micros};

/// QoS 1 messages a publisher keeps unacknowledged (AWS's in-flight limit).
const PUBLISH_WINDOW: usize = 100;
/// Publishes written per flush.
const PUBLISH_BATCH: usize = 32;

#[derive(Clone, Debug)]
pub struct FlowPlan {
    pub mode: &'static str,
    /// (client id, topic) of each publisher.
    pub publishers: Vec<(String, String)>,
    /// (client id, filter) of each subscriber.
    pub subscribers: Vec<(String, String)>,
    pub qos: QoS,
    pub payload_bytes: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Total publishes per second across publishers; `None`: as fast as possible.
    pub rate: Option<f64>,
}

/// Shared by the tasks of one run.
struct Run {
    measuring: AtomicBool,
    stopping: AtomicBool,
    received: AtomicU64,
    sent: AtomicU64,
}

/// Runs a flow: publishers connect to `target`, subscribers to `subscribe_to` in turn.
pub async fn run(target: &Target, subscribe_to: &[Target], plan: FlowPlan) -> anyhow::Result<Value> {
    let run = Arc::new(Run {
        measuring: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        received: AtomicU64::new(0),
        sent: AtomicU64::new(0),
    });
    let mut receivers = Vec::new();
    for ((client_id, filter), at) in plan.subscribers.iter().zip(subscribe_to.iter().cycle()) {
        let mut connection = at.connect(client_id).await?;
        connection.subscribe(filter, plan.qos).await?;
        receivers.push(tokio::spawn(receive(connection, run.clone())));
    }
    let per_publisher_rate = plan.rate.map(|r| r / plan.publishers.len().max(1) as f64);
    let mut publishers = Vec::new();
    for (client_id, topic) in &plan.publishers {
        let connection = target.connect(client_id).await?;
        publishers.push(tokio::spawn(publish(
            connection,
            topic.clone(),
            plan.clone(),
            per_publisher_rate,
            run.clone(),
        )));
    }
    tokio::time::sleep(plan.warmup).await;
    let sent_before = run.sent.load(Ordering::Relaxed);
    run.measuring.store(true, Ordering::Release);
    let started = Instant::now();
    tokio::time::sleep(plan.duration).await;
    run.measuring.store(false, Ordering::Release);
    let elapsed = started.elapsed().as_secs_f64();
    let sent = run.sent.load(Ordering::Relaxed) - sent_before;
    let received = run.received.load(Ordering::Relaxed);
    run.stopping.store(true, Ordering::Release);
    for publisher in publishers {
        publisher.abort();
    }
    let mut merged = histogram();
    // Receivers notice `stopping` within their read timeout and hand back their samples.
    for receiver in receivers {
        if let Ok(Ok(Ok(samples))) = tokio::time::timeout(Duration::from_secs(5), receiver).await {
            merged.add(&samples).ok();
        }
    }
    Ok(json!({
        "mode": plan.mode,
        "unit": "msgs",
        "qos": plan.qos as u8,
        "publishers": plan.publishers.len(),
        "subscribers": plan.subscribers.len(),
        "payload_bytes": plan.payload_bytes,
        "offered_rate": plan.rate,
        "seconds": elapsed,
        "published": sent,
        "delivered": received,
        "rate_per_sec": received as f64 / elapsed,
        "latency": latency(&merged),
    }))
}

/// Counts deliveries in the window (acknowledging QoS 1) and records their latency.
async fn receive(connection: crate::client::Connection, run: Arc<Run>) -> anyhow::Result<Histogram<u64>> {
    let (mut reader, mut writer) = connection.split();
    let mut samples = histogram();
    let mut packets = Vec::new();
    loop {
        if run.stopping.load(Ordering::Acquire) {
            return Ok(samples);
        }
        // A short read timeout lets the task see `stopping` and return its samples.
        match tokio::time::timeout(Duration::from_millis(200), reader.read_batch(&mut packets)).await {
            Err(_) => continue,
            Ok(result) => result?,
        }
        let now = now_micros();
        let measuring = run.measuring.load(Ordering::Acquire);
        for packet in packets.drain(..) {
            if let Packet::Publish(publish) = packet {
                if let Some(id) = publish.packet_id {
                    writer.queue_puback(id);
                }
                if measuring {
                    run.received.fetch_add(1, Ordering::Relaxed);
                    if let Some(stamp) = publish.payload.get(..8) {
                        let sent = u64::from_be_bytes(stamp.try_into().expect("8 bytes"));
                        samples.record(now.saturating_sub(sent).max(1)).ok();
                    }
                }
            }
        }
        writer.flush().await?;
    }
}

/// Publishes stamped payloads, in batches, within the QoS 1 window and the rate.
async fn publish(
    connection: crate::client::Connection,
    topic: String,
    plan: FlowPlan,
    rate: Option<f64>,
    run: Arc<Run>,
) -> anyhow::Result<()> {
    let (mut reader, mut writer) = connection.split();
    let window = Arc::new(Semaphore::new(PUBLISH_WINDOW));
    if plan.qos == QoS::AtLeastOnce {
        let window = window.clone();
        tokio::spawn(async move {
            let mut packets = Vec::new();
            while reader.read_batch(&mut packets).await.is_ok() {
                let acked = packets.drain(..).filter(|p| matches!(p, Packet::PubAck(_))).count();
                window.add_permits(acked);
            }
        });
    }
    let started = Instant::now();
    let mut published: u64 = 0;
    let mut packet_id: u16 = 0;
    while !run.stopping.load(Ordering::Acquire) {
        let batch = match rate {
            // Paced: publish what the schedule says is due, at most a batch.
            Some(rate) => {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                if due <= published {
                    tokio::time::sleep(Duration::from_secs_f64(1.0 / rate).min(Duration::from_millis(5))).await;
                    continue;
                }
                ((due - published) as usize).min(PUBLISH_BATCH)
            }
            None => PUBLISH_BATCH,
        };
        if plan.qos == QoS::AtLeastOnce {
            window.acquire_many(batch as u32).await?.forget();
        }
        for _ in 0..batch {
            let id = (plan.qos == QoS::AtLeastOnce).then(|| {
                packet_id = packet_id.checked_add(1).unwrap_or(1);
                packet_id
            });
            writer.queue_publish(&topic, stamped(plan.payload_bytes), id);
        }
        writer.flush().await?;
        published += batch as u64;
        run.sent.fetch_add(batch as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// A payload of `size` bytes starting with the current time.
fn stamped(size: usize) -> Bytes {
    let mut payload = BytesMut::with_capacity(size.max(8));
    payload.put_u64(now_micros());
    payload.resize(size.max(8), b'x');
    payload.freeze()
}
