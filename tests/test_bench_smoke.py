"""The benchmark harness works and reports (a smoke, never a speed check): every
`ferrocore-bench` mode against the session's server, and `bench/compare.py --quick`
against a fresh ferrocore and Mosquitto side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from security_helpers import ACCOUNT_ID, REGION

# The load generator's modes: the same on any store, so the PostgreSQL pass of
# scripts/test skips this suite.
pytestmark = pytest.mark.store_neutral

REPO = Path(__file__).resolve().parent.parent


def bench_binary() -> Path:
    configured = os.environ.get("FERROCORE_BENCH_BIN")
    if configured:
        return Path(configured)
    sibling = Path(os.environ.get("FERROCORE_BIN", REPO / "target" / "release" / "ferrocore")).with_name("ferrocore-bench")
    return sibling


@pytest.fixture(scope="module")
def bench():
    binary = bench_binary()
    if not binary.exists():
        pytest.skip(f"ferrocore-bench is not built at {binary} (cargo build --release -p ferrocore-bench)")
    return binary


@pytest.fixture(scope="module")
def credentials(client_factory, server, tmp_path_factory):
    """A certificate under a bench policy, and two things for the shadow mode."""
    if not hasattr(server, "proc"):
        pytest.skip("the idle mode needs the broker's pid: run against a server started by the tests")
    iot = client_factory("iot")
    files = tmp_path_factory.mktemp("bench")
    created = iot.create_keys_and_certificate(setAsActive=True)
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT_ID}"
    shadow = "$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/smoke-*"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": [f"{arn}:topic/bench/${{iot:ClientId}}/*", f"{arn}:topic/{shadow}"]},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": [f"{arn}:topicfilter/bench/*", f"{arn}:topicfilter/{shadow}"]},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": [f"{arn}:topic/bench/*", f"{arn}:topic/{shadow}"]},
    ]}
    iot.create_policy(policyName="bench-smoke", policyDocument=json.dumps(policy))
    iot.attach_policy(policyName="bench-smoke", target=created["certificateArn"])
    for i in range(2):
        iot.create_thing(thingName=f"smoke-shadow-{i}")
        iot.attach_thing_principal(thingName=f"smoke-shadow-{i}", principal=created["certificateArn"])
    (files / "cert.pem").write_text(created["certificatePem"])
    (files / "key.pem").write_text(created["keyPair"]["PrivateKey"])
    with urllib.request.urlopen(f"{server.endpoint}/ca.pem", timeout=10) as response:
        (files / "ca.pem").write_bytes(response.read())
    return ["--addr", f"127.0.0.1:{server.mqtt_port}", "--ca", str(files / "ca.pem"),
            "--cert", str(files / "cert.pem"), "--key", str(files / "key.pem"), "--prefix", "smoke-"]


def run(bench: Path, *args: str) -> dict:
    completed = subprocess.run([str(bench), *args], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "RUST_BACKTRACE": "0"})
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["mode"] in completed.stderr  # the human line
    return result


@pytest.mark.parametrize("mode, extra", [
    ("fan-in", ["--qos", "1", "--publishers", "2"]),
    ("fan-out", ["--qos", "0", "--subscribers", "3"]),
    ("pairs", ["--qos", "1", "--pairs", "2"]),
])
def test_flow_modes_report_throughput_and_latency(bench, credentials, mode, extra):
    result = run(bench, mode, *credentials, *extra, "--duration", "1", "--warmup", "0.5")
    assert result["delivered"] > 0 and result["rate_per_sec"] > 0
    assert result["latency"]["p50_us"] <= result["latency"]["p99_us"] <= result["latency"]["max_us"]


def test_paced_flow_offers_the_requested_rate(bench, credentials):
    result = run(bench, "pairs", *credentials, "--qos", "1", "--pairs", "2", "--rate", "200", "--duration", "1", "--warmup", "0.5")
    assert 100 <= result["published"] <= 400


def test_handshakes_mode(bench, credentials):
    result = run(bench, "handshakes", *credentials, "--concurrency", "2", "--duration", "1")
    assert result["completed"] > 0 and result["failed"] == 0


def test_idle_mode_reads_the_broker_memory(bench, credentials, server):
    result = run(bench, "idle", *credentials, "--connections", "20", "--concurrency", "4",
                 "--broker-pid", str(server.proc.pid), "--hold", "0.2")
    assert result["connections"] == 20 and result["failed"] == 0
    assert result["broker_rss_after"] > 0


def test_shadow_mode_loses_no_update(bench, credentials):
    result = run(bench, "shadow", *credentials, "--devices", "2", "--duration", "1", "--warmup", "0.5")
    assert result["accepted_total"] > 0 and result["lost"] == 0 and result["rejected"] == 0


def test_create_things_mode(bench, server):
    result = run(bench, "create-things", "--endpoint", server.endpoint, "--prefix", "smoke-", "--concurrency", "2",
                 "--duration", "1")
    assert result["completed"] > 0


def test_compare_script_writes_a_table(bench, tmp_path):
    output = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "RUST_BACKTRACE": "0", "CARGO_TARGET_DIR": str(bench.parent.parent)}
    completed = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), "--quick", "--no-build",
                                "--output", str(output)], capture_output=True, text=True, timeout=600, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    text = output.read_text()
    assert "| scenario |" in text and "fan-in QoS 0" in text and "durable shadow updates" in text
    if "SKIPPING Mosquitto" in completed.stderr:
        pytest.skip("Mosquitto is not installed: the comparison ran against ferrocore only")
