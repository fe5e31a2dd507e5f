#!/usr/bin/env python3
"""Registry writes against a fleet of idle connections, on this machine, in one run.

1. CreateThing/s with N idle mutual-TLS connections ÷ CreateThing/s with none,
   alternating none / N, medians of --runs each (a write that cannot change any
   connection's permissions must not cost per connection).
2. Revocation latency with M connections open: each of --victims devices has its
   own certificate; UpdateCertificate INACTIVE is called and the time until the
   server closes that device's socket is measured (p50, p99, max).

    python3 bench/fleet_rechecks.py                    # N=10,000, M=19,500
    python3 bench/fleet_rechecks.py --quick            # a short smoke

Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import REGION, Ferrocore, broker_args, build, log, provision, run_bench  # noqa: E402


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class IdleFleet:
    """`ferrocore-bench idle` holding `count` connections until stopped."""

    def __init__(self, bench: Path, ferrocore: Ferrocore, files: dict, count: int, prefix: str):
        baseline = open_descriptors(ferrocore.proc.pid)
        self.proc = subprocess.Popen(
            [str(bench), "idle", *broker_args(ferrocore.mqtt_port, files), "--prefix", prefix,
             "--connections", str(count), "--concurrency", "64", "--broker-pid", str(ferrocore.proc.pid),
             "--hold", "100000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Open when the broker holds `count` more descriptors, or (a few connections
        # failed) when their number stops growing near it.
        deadline, last, steady = time.monotonic() + 600, -1, 0
        while (opened := open_descriptors(ferrocore.proc.pid) - baseline) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the idle fleet did not open: {self.proc.stderr.read().decode()[-2000:]}")
            steady = steady + 1 if opened == last else 0
            if steady >= 10 and opened >= count * 0.99:
                log(f"idle fleet: {opened} of {count} connections open")
                break
            last = opened
            time.sleep(0.5)
        # Accepted is not yet connected: let the last handshakes and CONNECTs finish.
        time.sleep(3)
        self.ferrocore, self.baseline = ferrocore, baseline

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + 120
        while open_descriptors(self.ferrocore.proc.pid) > self.baseline + 16 and time.monotonic() < deadline:
            time.sleep(0.5)


def mqtt_connect_packet(client_id: str) -> bytes:
    name = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = len(name).to_bytes(2, "big") + name
    remaining = len(variable) + len(payload)
    assert remaining < 128
    return bytes([0x10, remaining]) + variable + payload


def connect_victim(port: int, files: dict, cert: Path, key: Path, client_id: str) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(files["ca"]))
    context.check_hostname = False
    context.load_cert_chain(str(cert), str(key))
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
    tls.sendall(mqtt_connect_packet(client_id))
    connack = tls.recv(4)
    if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
        raise RuntimeError(f"{client_id} was refused: {connack!r}")
    return tls


def wait_closed(tls: ssl.SSLSocket) -> None:
    tls.settimeout(30)
    while True:
        try:
            if not tls.recv(4096):
                return
        except (ssl.SSLError, ConnectionError):
            return


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections during CreateThing")
    parser.add_argument("--fleet", type=int, default=19_500, help="connections open during revocations")
    parser.add_argument("--victims", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.idle, args.fleet, args.victims, args.runs, args.duration = 500, 500, 5, 1, 2.0
    import boto3

    ferrocore_bin, bench = build()
    with tempfile.TemporaryDirectory(prefix="ferrocore-rechecks-") as tmp:
        work = Path(tmp)
        ferrocore = Ferrocore(ferrocore_bin, work)
        try:
            files = provision(ferrocore, work, 0)
            rates: dict[str, list[float]] = {"none": [], "idle": []}
            for run in range(args.runs):
                for case in ("none", "idle"):
                    fleet = IdleFleet(bench, ferrocore, files, args.idle, f"bench-r{run}-") if case == "idle" else None
                    try:
                        result = run_bench(bench, ["create-things", "--endpoint", ferrocore.endpoint, "--prefix",
                                                   f"ct-{case}-{run}-", "--duration", str(args.duration)], 120)
                    finally:
                        if fleet:
                            fleet.stop()
                    rates[case].append(result["rate_per_sec"])
                    log(f"CreateThing/s {case} run {run}: {result['rate_per_sec']:.0f}")

            iot = boto3.client("iot", endpoint_url=ferrocore.endpoint, region_name=REGION,
                               aws_access_key_id="test", aws_secret_access_key="test")
            victims = []
            for i in range(args.victims):
                created = iot.create_keys_and_certificate(setAsActive=True)
                iot.attach_policy(policyName="bench", target=created["certificateArn"])
                cert, key = work / f"victim-{i}.pem", work / f"victim-{i}.key"
                cert.write_text(created["certificatePem"])
                key.write_text(created["keyPair"]["PrivateKey"])
                victims.append((created["certificateId"], cert, key))
            fleet = IdleFleet(bench, ferrocore, files, args.fleet - args.victims, "bench-fleet-")
            latencies = []
            try:
                sockets = [connect_victim(ferrocore.mqtt_port, files, cert, key, f"bench-victim-{i}")
                           for i, (_, cert, key) in enumerate(victims)]
                open_now = open_descriptors(ferrocore.proc.pid)
                for (certificate_id, _, _), tls in zip(victims, sockets):
                    started = time.monotonic()
                    iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
                    wait_closed(tls)
                    latencies.append(time.monotonic() - started)
            finally:
                fleet.stop()
        finally:
            ferrocore.stop()

    none, idle = statistics.median(rates["none"]), statistics.median(rates["idle"])
    print(json.dumps({"create_thing_per_sec": rates, "revocation_seconds": latencies, "descriptors": open_now}))
    print()
    print("| measure | result | target |")
    print("|---|---|---|")
    print(f"| CreateThing/s, {args.idle:,} idle connections ÷ none (medians of {args.runs}: "
          f"{idle:,.0f} / {none:,.0f}) | **{idle / none:.2f}** | ≥ 0.95 |")
    print(f"| UpdateCertificate INACTIVE → that device's socket closed, {args.fleet:,} connections open "
          f"({args.victims} revocations) | p50 {percentile(latencies, 50) * 1000:.0f} ms, "
          f"p99 **{percentile(latencies, 99) * 1000:.0f} ms**, max {max(latencies) * 1000:.0f} ms | p99 < 1 s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
