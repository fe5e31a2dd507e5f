#!/usr/bin/env python3
"""Side-by-side benchmark: ferrocore against Mosquitto (and moto_server for the
control plane) on this machine, in one run, alternating A B A B, reporting
medians and ratios. Writes BENCHMARKS.md (or --output).

    python3 bench/compare.py                 # the full run documented in BENCHMARKS.md
    python3 bench/compare.py --quick         # a short smoke of every scenario

Both brokers get the same server certificate and key (ferrocore's generated
ones), the same client certificate (made by ferrocore's CreateKeysAndCertificate)
and an equivalent walled-garden authorization: ferrocore's IoT policy
(`bench/<client id>/...` to publish, `bench/...` to subscribe and receive) and a
Mosquitto ACL with the same meaning (`pattern write bench/%c/#`, `pattern read bench/#`).
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "000000000000"
REGION = "us-east-1"


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def build() -> tuple[Path, Path]:
    log("building ferrocore and ferrocore-bench (release)")
    subprocess.run(["cargo", "build", "--release", "-p", "ferrocore", "-p", "ferrocore-bench"], cwd=REPO, check=True)
    release = target_dir() / "release"
    return release / "ferrocore", release / "ferrocore-bench"


def mosquitto_binary() -> Path | None:
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing mosquitto (Debian package)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "mosquitto"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if Path("/usr/sbin/mosquitto").exists():
            return Path("/usr/sbin/mosquitto")
    return None


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class Ferrocore:
    def __init__(self, binary: Path, workdir: Path, extra_args: tuple[str, ...] = ()):
        self.api_port, self.mqtt_port, self.https_port = free_port(), free_port(), free_port()
        self.data = workdir / "ferrocore-data"
        self.endpoint = f"http://127.0.0.1:{self.api_port}"
        self.log = open(workdir / "ferrocore.log", "ab")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--data-dir", str(self.data), "--api-addr", f"127.0.0.1:{self.api_port}",
             "--mqtt-addr", f"127.0.0.1:{self.mqtt_port}", "--https-addr", f"127.0.0.1:{self.https_port}",
             *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "FERROCORE_LOG": "warn"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("ferrocore did not start")

    def stop(self) -> None:
        stop_process(self.proc)


def provision(ferrocore: Ferrocore, workdir: Path, shadow_devices: int) -> dict:
    import boto3
    kw = dict(endpoint_url=ferrocore.endpoint, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
    iot = boto3.client("iot", **kw)
    created = iot.create_keys_and_certificate(setAsActive=True)
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}"
    thing = "${iot:Connection.Thing.ThingName}"
    shadow = f"$aws/things/{thing}/shadow/*"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/bench-*"},
        {"Effect": "Allow", "Action": "iot:Publish",
         "Resource": [f"{arn}:topic/bench/${{iot:ClientId}}/*", f"{arn}:topic/{shadow}"]},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": [f"{arn}:topicfilter/bench/*", f"{arn}:topicfilter/{shadow}"]},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": [f"{arn}:topic/bench/*", f"{arn}:topic/{shadow}"]},
    ]}
    iot.create_policy(policyName="bench", policyDocument=json.dumps(policy))
    iot.attach_policy(policyName="bench", target=created["certificateArn"])
    for i in range(shadow_devices):
        iot.create_thing(thingName=f"bench-shadow-{i}")
        iot.attach_thing_principal(thingName=f"bench-shadow-{i}", principal=created["certificateArn"])
    files = {"cert": workdir / "client.pem", "key": workdir / "client.key", "ca": ferrocore.data / "pki" / "ca.pem",
             "server_cert": ferrocore.data / "pki" / "server.pem", "server_key": ferrocore.data / "pki" / "server.key"}
    files["cert"].write_text(created["certificatePem"])
    files["key"].write_text(created["keyPair"]["PrivateKey"])
    os.chmod(files["key"], 0o600)
    return files


class Mosquitto:
    def __init__(self, binary: Path, workdir: Path, files: dict):
        self.port = free_port()
        acl = workdir / "mosquitto.acl"
        # `pattern` lines apply to every client (`topic` lines before any `user` only to anonymous ones).
        acl.write_text("pattern write bench/%c/#\npattern read bench/#\n")
        conf = workdir / "mosquitto.conf"
        conf.write_text("\n".join([
            "per_listener_settings false",
            # Run as the invoking user: Mosquitto started as root would drop to `mosquitto`
            # and lose access to the work directory.
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            f"cafile {files['ca']}", f"certfile {files['server_cert']}", f"keyfile {files['server_key']}",
            "require_certificate true", "use_identity_as_username true",
            f"acl_file {acl}", "allow_anonymous false", "persistence false",
            "set_tcp_nodelay true", "max_inflight_messages 100", "max_keepalive 1200",
            f"log_dest file {workdir / 'mosquitto.log'}", "log_type error", "log_type warning", "",
        ]))
        self.proc = subprocess.Popen([str(binary), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self) -> None:
        stop_process(self.proc)


def run_bench(bench: Path, args: list[str], timeout: float) -> dict:
    completed = subprocess.run([str(bench), *args], capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"ferrocore-bench {' '.join(args)} failed: {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def broker_args(port: int, files: dict) -> list[str]:
    return ["--addr", f"127.0.0.1:{port}", "--ca", str(files["ca"]), "--cert", str(files["cert"]), "--key", str(files["key"])]


def median_of(results: list[dict], pointer: str) -> float | None:
    values = []
    for result in results:
        value = result
        for part in pointer.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            values.append(float(value))
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs of every scenario (a smoke test)")
    parser.add_argument("--runs", type=int, default=3, help="runs per broker and scenario (medians are reported)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per flow run")
    parser.add_argument("--idle-connections", type=int, default=19_500)
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write every raw result here")
    parser.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    parser.add_argument("--store-url", help="run ferrocore on this (empty) PostgreSQL database instead of SQLite")
    parser.add_argument("--only", action="append", default=[],
                        help="run only the scenarios whose name contains this (repeatable)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration, args.idle_connections = 1, 1.0, 200

    release = target_dir() / "release"
    ferrocore_bin, bench = (release / "ferrocore", release / "ferrocore-bench") if args.no_build else build()
    mosquitto_bin = mosquitto_binary()
    if mosquitto_bin is None:
        log("SKIPPING Mosquitto: no mosquitto binary and cannot install it (needs root and apt-get)")
    moto = shutil.which("moto_server")
    if moto is None:
        log("SKIPPING moto_server comparison: moto_server not installed")

    workdir = Path(tempfile.mkdtemp(prefix="ferrocore-bench-"))
    log(f"work directory {workdir}")
    store_args = ("--store-url", args.store_url) if args.store_url else ()
    ferrocore = Ferrocore(ferrocore_bin, workdir, store_args)
    mosquitto = None
    moto_proc = None
    rows: list[dict] = []
    raw: dict = {}
    try:
        shadow_devices = 16 if args.quick else 64
        files = provision(ferrocore, workdir, shadow_devices)
        if mosquitto_bin:
            mosquitto = Mosquitto(mosquitto_bin, workdir, files)
        brokers = {"ferrocore": ferrocore.mqtt_port}
        if mosquitto:
            brokers["mosquitto"] = mosquitto.port
        pids = {"ferrocore": ferrocore.proc.pid, "mosquitto": mosquitto.proc.pid if mosquitto else None}
        d = str(args.duration)
        flow = ["--duration", d, "--warmup", "1"]
        timeout = args.duration * 3 + 120

        def compare(name: str, target: str, argv_for, metric: str = "rate_per_sec", better: str = "higher",
                    columns: list[str] | None = None, label=lambda column: column) -> dict:
            """Runs argv_for(column, run) for each column in turn (A B A B ...), `args.runs` times."""
            if args.only and not any(part in name for part in args.only):
                return {}
            results: dict[str, list[dict]] = {c: [] for c in (columns or brokers)}
            for run in range(args.runs):
                for column in results:
                    argv = argv_for(column, run)
                    log(f"{name}: {label(column)} run {run + 1}/{args.runs}")
                    results[column].append(run_bench(bench, argv, timeout))
            raw[name] = results
            row = {"scenario": name, "target": target, "metric": metric, "better": better}
            for broker, broker_results in results.items():
                row[broker] = median_of(broker_results, metric)
                row[f"{broker}_p99_us"] = median_of(broker_results, "latency/p99_us")
            if row.get("ferrocore") and row.get("mosquitto"):
                row["ratio"] = row["ferrocore"] / row["mosquitto"]
            rows.append(row)
            return row

        def flow_args(mode: str, *extra: str):
            return lambda broker, _run: [mode, *broker_args(brokers[broker], files), *flow, *extra]

        compare("fan-in QoS 0 (10 → 1, 100 B)", "≥ 2× Mosquitto", flow_args("fan-in", "--qos", "0"))
        compare("fan-in QoS 1 (10 → 1, 100 B)", "≥ 2× Mosquitto", flow_args("fan-in", "--qos", "1"))
        compare("fan-out QoS 0 (1 → 100, 100 B)", "≥ 2× Mosquitto", flow_args("fan-out", "--qos", "0", "--subscribers", "100"))
        compare("fan-in QoS 1 at 50,000 msgs/s offered (10 → 1, 100 B)", "delivers what is offered",
                flow_args("fan-in", "--qos", "1", "--rate", "50000"))
        pairs = compare("pairs QoS 1 (100 pairs, 100 B)", "≥ 2× Mosquitto", flow_args("pairs", "--qos", "1", "--pairs", "100"))
        saturation = pairs.get("mosquitto") or pairs.get("ferrocore")
        if saturation:
            half = f"{saturation / 2:.0f}"
            compare(f"p99 latency, pairs QoS 1 at {half} msgs/s (half of Mosquitto's saturation)", "p99 ≤ Mosquitto's",
                    flow_args("pairs", "--qos", "1", "--pairs", "100", "--rate", half), metric="latency/p99_us", better="lower")
        compare("handshakes (TLS 1.3 + CONNECT/CONNACK, 8 at a time)", "≥ 2× Mosquitto",
                lambda broker, _run: ["handshakes", *broker_args(brokers[broker], files), "--concurrency", "8", "--duration", d])
        def fresh_broker(broker: str, _run: int) -> list[str]:
            # Freed memory is rarely returned to the OS, so each idle run needs a fresh broker.
            nonlocal ferrocore, mosquitto
            if broker == "ferrocore":
                ferrocore.stop()
                ferrocore = Ferrocore(ferrocore_bin, workdir, store_args)
                brokers["ferrocore"], pids["ferrocore"] = ferrocore.mqtt_port, ferrocore.proc.pid
            else:
                mosquitto.stop()
                mosquitto = Mosquitto(mosquitto_bin, workdir, files)
                brokers["mosquitto"], pids["mosquitto"] = mosquitto.port, mosquitto.proc.pid
            time.sleep(1)
            return ["idle", *broker_args(brokers[broker], files), "--connections", str(args.idle_connections),
                    "--broker-pid", str(pids[broker]), "--prefix", f"bench-{broker}-"]

        compare(f"idle connections: broker bytes per connection ({args.idle_connections})", "≤ 2× Mosquitto",
                fresh_broker, metric="bytes_per_connection", better="lower")
        compare(f"durable shadow updates ({shadow_devices} devices, 4 in flight each)", "≥ 20,000/s, none lost",
                lambda broker, _run: ["shadow", *broker_args(brokers[broker], files), "--devices", str(shadow_devices),
                                      "--duration", d], columns=["ferrocore"])
        control = {"ferrocore": ferrocore.endpoint}
        if moto:
            moto_port = free_port()
            moto_proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(moto_port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            wait_port(moto_port)
            control["mosquitto"] = f"http://127.0.0.1:{moto_port}"
        # moto_server takes the second column.
        compare("control plane: CreateThing (16 concurrent, vs moto_server)", "≥ 50× moto_server",
                lambda column, run: ["create-things", "--endpoint", control[column], "--prefix", f"r{run}-",
                                     "--concurrency", "16", "--duration", d],
                columns=list(control), label=lambda column: "moto_server" if column == "mosquitto" else column)
    finally:
        ferrocore.stop()
        if mosquitto:
            mosquitto.stop()
        if moto_proc:
            stop_process(moto_proc)

    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "raw": raw}, indent=1))
    write_report(args, rows, mosquitto_bin)
    log(f"wrote {args.output}")
    return 0


def fmt(value, metric: str) -> str:
    if value is None:
        return "—"
    if metric == "latency/p99_us":
        return f"{value / 1000:.2f} ms"
    if metric == "bytes_per_connection":
        return f"{value / 1024:.1f} KiB"
    return f"{value:,.0f}/s"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, Linux {platform.release()}"


def version_of(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def write_report(args, rows: list[dict], mosquitto_bin: Path | None) -> None:
    command = "python3 bench/compare.py" + (" --quick" if args.quick else "")
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {datetime.date.today().isoformat()}: every scenario runs against",
        "ferrocore and Mosquitto in turn (A B A B …), "
        f"{args.runs} run(s) each, {args.duration:g} s measured after 1 s of warm-up; the table shows medians.",
        "Both brokers use mutual TLS with the same certificates and an equivalent per-client",
        "authorization (ferrocore: an IoT policy with policy variables evaluated on every publish,",
        "subscribe and delivery; Mosquitto: an ACL file). The load generator is `ferrocore-bench`",
        "(`crates/bench`), on the same machine, with two worker threads.",
        "",
        f"- Machine: {machine()}",
        f"- ferrocore {version_of([str(target_dir() / 'release' / 'ferrocore'), '--version'])}, "
        f"{version_of(['rustc', '--version'])}",
        f"- Mosquitto: {version_of([str(mosquitto_bin), '-h']) if mosquitto_bin else 'not available (skipped)'}",
        f"- moto_server: moto {version_of([sys.executable, '-c', 'import moto; print(moto.__version__)'])}",
        "",
        "| scenario | target | ferrocore | Mosquitto / moto | ratio | ferrocore p99 | Mosquitto p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row.get("ratio")
        lines.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            row["scenario"], row["target"], fmt(row.get("ferrocore"), row["metric"]), fmt(row.get("mosquitto"), row["metric"]),
            f"{ratio:.2f}×" if ratio else "—",
            fmt(row.get("ferrocore_p99_us"), "latency/p99_us"), fmt(row.get("mosquitto_p99_us"), "latency/p99_us")))
    lines += ["", "Ratios are ferrocore ÷ the other (for bytes per connection and latency, lower is better).", ""]
    notes = REPO / "bench" / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    args.output.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
