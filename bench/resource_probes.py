#!/usr/bin/env python3
"""The resource probes of issue 14, measured against a freshly started ferrocore:

1. publishing QoS 1 while a persistent session is offline and its queue grows
   (msgs/s over the first and the last 2,000 messages, against a topic nobody queues for);
2. memory per departed client id (server RSS growth over N connect/disconnect cycles,
   each with a new client id);
3. how long an idle or slow API connection is held;
4. 600 idle API connections under a 512-descriptor limit: does a device still connect,
   and how many log lines does the server write meanwhile.

Usage: python3 bench/resource_probes.py [--messages 20000] [--clients 5000]
Needs target/release/ferrocore, boto3 and paho-mqtt (the test virtualenv has both).
Prints a Markdown table (for BENCHMARKS.md) and the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
BINARY = Path(os.environ.get("FERROCORE_BIN", ROOT / "target" / "release" / "ferrocore"))
EVERYTHING = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: Path, config: str = "", nofile: int | None = None):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        (base / "ferrocore.toml").write_text(config)
        self.api, self.mqtt, self.https = free_port(), free_port(), free_port()
        self.log = base / "ferrocore.log"
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--data-dir", str(base / "data"), "--config", str(base / "ferrocore.toml"),
             "--api-addr", f"127.0.0.1:{self.api}", "--mqtt-addr", f"127.0.0.1:{self.mqtt}",
             "--https-addr", f"127.0.0.1:{self.https}"],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, preexec_fn=limit,
        )
        self.endpoint = f"http://127.0.0.1:{self.api}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/health", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"server did not start; see {self.log}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def device(self) -> Path:
        iot = boto3.client("iot", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        created = iot.create_keys_and_certificate(setAsActive=True)
        iot.create_policy(policyName="everything", policyDocument=EVERYTHING)
        iot.attach_policy(policyName="everything", target=created["certificateArn"])
        files = self.base / "device"
        files.mkdir(exist_ok=True)
        (files / "cert.pem").write_text(created["certificatePem"])
        (files / "key.pem").write_text(created["keyPair"]["PrivateKey"])
        (files / "ca.pem").write_bytes(urllib.request.urlopen(f"{self.endpoint}/ca.pem").read())
        return files

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def client(server: Server, files: Path, client_id: str, clean: bool = True, in_flight: int = 20) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.max_inflight_messages_set(in_flight)
    c.tls_set(ca_certs=str(files / "ca.pem"), certfile=str(files / "cert.pem"), keyfile=str(files / "key.pem"))
    connected = threading.Event()
    c.on_connect = lambda *a, **k: connected.set()
    c.connect("localhost", server.mqtt, keepalive=60)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"{client_id} did not connect")
    return c


def publish_rates(server: Server, files: Path, topic: str, count: int, window: int = 2000) -> tuple[float, float, int]:
    """QoS 1 publishes, 100 in flight: (msgs/s over the first window, over the last, acknowledged)."""
    publisher = client(server, files, f"pub-{topic.replace('/', '-')}", in_flight=100)
    acked = []
    lock = threading.Condition()

    def on_publish(*_args, **_kwargs):
        with lock:
            acked.append(time.monotonic())
            lock.notify_all()

    publisher.on_publish = on_publish
    started = time.monotonic()
    for n in range(count):
        publisher.publish(topic, str(n).encode().ljust(100, b" "), qos=1)
    with lock:
        lock.wait_for(lambda: len(acked) >= count, timeout=600)
    publisher.disconnect()
    publisher.loop_stop()
    first = window / (acked[window - 1] - started)
    last = window / (acked[-1] - acked[-window - 1])
    return first, last, len(acked)


def probe_offline_queue(server: Server, files: Path, count: int) -> dict:
    subscriber = client(server, files, "offline-sub", clean=False)
    subscriber.subscribe("queued/t", qos=1)
    time.sleep(0.5)
    subscriber.disconnect()
    subscriber.loop_stop()
    time.sleep(0.5)
    queued = publish_rates(server, files, "queued/t", count)
    control = publish_rates(server, files, "nobody/t", count)
    received = []
    back = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="offline-sub", clean_session=False)
    back.tls_set(ca_certs=str(files / "ca.pem"), certfile=str(files / "cert.pem"), keyfile=str(files / "key.pem"))
    back.on_message = lambda c, u, m: received.append(m.payload)
    back.connect("localhost", server.mqtt)
    back.loop_start()
    started = time.monotonic()
    while len(received) < count and time.monotonic() < started + 300:
        time.sleep(0.2)
    replay_s = time.monotonic() - started
    back.disconnect()
    back.loop_stop()
    return {
        "queued_first_window_per_s": round(queued[0]), "queued_last_window_per_s": round(queued[1]),
        "queued_acknowledged": queued[2], "control_first_window_per_s": round(control[0]),
        "control_last_window_per_s": round(control[1]), "replayed_after_reconnect": len(set(received)),
        "replay_s": round(replay_s, 1),
    }


def probe_departed_clients(server: Server, files: Path, count: int) -> dict:
    def cycle(n: int) -> None:
        c = client(server, files, f"departed-{n}")
        c.disconnect()
        c.loop_stop()

    # Warm up allocator pools and caches first, then measure the growth.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(cycle, range(500)))
    time.sleep(1)
    before = server.rss_kib()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(cycle, range(500, 500 + count)))
    time.sleep(1)
    after = server.rss_kib()
    return {"clients": count, "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_departed_client_id": round((after - before) * 1024 / count)}


def held_for(server: Server, request: bytes) -> float:
    with socket.create_connection(("127.0.0.1", server.api), timeout=120) as s:
        if request:
            s.sendall(request)
        started = time.monotonic()
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        return round(time.monotonic() - started, 1)


def probe_api_timeouts(server: Server) -> dict:
    return {
        "idle_connection_held_s": held_for(server, b""),
        "slow_header_held_s": held_for(server, b"GET /health HTTP/1.1\r\n"),
        "stalled_body_answered_after_s": held_for(server, b"POST /things/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"),
    }


def probe_descriptor_limit(base: Path) -> dict:
    server = Server(base / "fd", nofile=512)
    try:
        files = server.device()
        sockets = []
        for _ in range(600):  # connection attempts that do not wait for the server
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.api))
            sockets.append(sock)
        lines_before = server.log.read_text(errors="replace").count("\n")
        started = time.monotonic()
        ok = True
        try:
            c = client(server, files, "during-flood")
            c.disconnect()
            c.loop_stop()
        except (RuntimeError, OSError, ssl.SSLError):
            ok = False
        connect_s = round(time.monotonic() - started, 2)
        time.sleep(10)
        lines = server.log.read_text(errors="replace").count("\n") - lines_before
        for s in sockets:
            s.close()
        return {"device_connected_under_flood": ok, "device_connect_s": connect_s, "log_lines_in_10s": lines}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=5_000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = Server(base / "main", config="mqtt_session_queue_limit = 100000\napi_body_timeout_secs = 5\n")
        try:
            files = server.device()
            results["offline_queue"] = probe_offline_queue(server, files, args.messages)
            results["departed_clients"] = probe_departed_clients(server, files, args.clients)
            results["api_timeouts"] = probe_api_timeouts(server)
        finally:
            server.stop()
        results["descriptor_limit"] = probe_descriptor_limit(base)
    q, d, t, f = (results[k] for k in ("offline_queue", "departed_clients", "api_timeouts", "descriptor_limit"))
    print("| probe | result |")
    print("|---|---|")
    print(f"| QoS 1 publish rate, {args.messages:,} messages queued for an offline session | "
          f"{q['queued_first_window_per_s']:,}/s first 2,000, {q['queued_last_window_per_s']:,}/s last 2,000 "
          f"(no session: {q['control_first_window_per_s']:,}/s, {q['control_last_window_per_s']:,}/s); "
          f"{q['queued_acknowledged']:,} acknowledged, {q['replayed_after_reconnect']:,} distinct replayed "
          f"in {q['replay_s']} s |")
    print(f"| memory per departed client id ({d['clients']:,} connect/disconnect cycles) | "
          f"{d['bytes_per_departed_client_id']:,} bytes (RSS {d['rss_before_kib']:,} → {d['rss_after_kib']:,} KiB) |")
    print(f"| API connection held: idle / slow header / stalled body (timeout 5 s) | "
          f"{t['idle_connection_held_s']} s / {t['slow_header_held_s']} s / {t['stalled_body_answered_after_s']} s |")
    print(f"| 600 idle API connections, 512-descriptor limit | device connects: {f['device_connected_under_flood']} "
          f"({f['device_connect_s']} s); {f['log_lines_in_10s']} log lines in 10 s |")
    print(json.dumps(results, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
