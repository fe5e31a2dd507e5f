//! Results: throughput and an HDR latency histogram, as one JSON object (stdout)
//! and one human line (stderr).

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Microseconds since the Unix epoch: the clock publishers stamp payloads with.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Latency percentiles in microseconds (absent when nothing was measured).
pub fn latency(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return Value::Null;
    }
    json!({
        "p50_us": histogram.value_at_quantile(0.50),
        "p90_us": histogram.value_at_quantile(0.90),
        "p99_us": histogram.value_at_quantile(0.99),
        "p999_us": histogram.value_at_quantile(0.999),
        "max_us": histogram.max(),
        "samples": histogram.len(),
    })
}

/// Prints the result and answers it.
pub fn emit(result: Value) -> Value {
    let rate = result.get("rate_per_sec").and_then(Value::as_f64).unwrap_or(0.0);
    let p99 = result.pointer("/latency/p99_us").and_then(Value::as_u64);
    let extra = p99.map(|p| format!(", p99 {:.2} ms", p as f64 / 1000.0)).unwrap_or_default();
    eprintln!(
        "{}: {:.0} {}/s{extra}",
        result["mode"].as_str().unwrap_or("?"),
        rate,
        result["unit"].as_str().unwrap_or("ops")
    );
    println!("{result}");
    result
}
