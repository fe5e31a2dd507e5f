#!/usr/bin/env python3
"""Cluster benchmark: one ferrocore node against three nodes on one PostgreSQL and one
nats-server, on this machine, in one run, alternating the columns run by run, reporting
medians. Prints a Markdown table (BENCHMARKS.md, section "Cluster").

    python3 bench/cluster.py --store-server postgres://postgres@127.0.0.1:5432
    python3 bench/cluster.py --store-server ... --quick      # a short smoke

Columns:
  one node      ferrocore alone (no --cluster-url), publishers and subscribers on it;
  cluster, local    three nodes, publishers and subscribers on node 1 (what joining a
                    cluster costs a node whose traffic stays local);
  cluster, across   three nodes, publishers on node 1, subscribers on nodes 2 and 3
                    (every delivery crosses NATS).
Every process (three nodes, nats-server, PostgreSQL, the load generator) shares this
machine's cores, so the cluster columns measure what a hop costs, not scale-out.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import Ferrocore, broker_args, free_port, log, median_of, provision, run_bench, stop_process, target_dir  # noqa: E402


def new_database(server: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", "--quiet", "--no-psqlrc", f"{server}/postgres", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True, timeout=30)
    return f"{server}/{name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store-server", required=True, help="a PostgreSQL server URL without database")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 1.0
    if shutil.which("nats-server") is None:
        log("nats-server is not installed (apt-get install nats-server)")
        return 1
    release = target_dir() / "release"
    binary, bench = release / "ferrocore", release / "ferrocore-bench"
    workdir = Path(tempfile.mkdtemp(prefix="ferrocore-cluster-bench-"))
    log(f"work directory {workdir}")
    nats_port = free_port()
    nats = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(nats_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    processes: list[Ferrocore] = []
    try:
        (workdir / "alone").mkdir()
        alone = Ferrocore(binary, workdir / "alone", ("--store-url", new_database(args.store_server)))
        processes.append(alone)
        alone_files = provision(alone, workdir / "alone", 0)
        cluster_store = new_database(args.store_server)
        nodes = []
        for node_id in ("n1", "n2", "n3"):
            (workdir / node_id).mkdir()
            node = Ferrocore(binary, workdir / node_id, ("--store-url", cluster_store, "--cluster-url",
                                                        f"nats://127.0.0.1:{nats_port}", "--node-id", node_id))
            processes.append(node)
            nodes.append(node)
        time.sleep(3)  # heartbeats: every node sees its peers
        cluster_files = provision(nodes[0], workdir / "n1", 0)
        n1 = f"127.0.0.1:{nodes[0].mqtt_port}"
        across = ",".join(f"127.0.0.1:{node.mqtt_port}" for node in nodes[1:])
        columns = {
            "one node": lambda: broker_args(alone.mqtt_port, alone_files),
            "cluster, local": lambda: broker_args(nodes[0].mqtt_port, cluster_files),
            "cluster, across": lambda: [*broker_args(nodes[0].mqtt_port, cluster_files), "--subscriber-addr", across],
        }
        flow = ["--duration", str(args.duration), "--warmup", "1"]
        scenarios = [
            ("fan-in QoS 0 (10 → 1, 100 B)", ["fan-in", "--qos", "0"], "rate_per_sec"),
            ("fan-in QoS 1 (10 → 1, 100 B)", ["fan-in", "--qos", "1"], "rate_per_sec"),
            ("fan-out QoS 0 (1 → 100, 100 B)", ["fan-out", "--qos", "0", "--subscribers", "100"], "rate_per_sec"),
            ("pairs QoS 1 (100 pairs, 100 B)", ["pairs", "--qos", "1", "--pairs", "100"], "rate_per_sec"),
            ("latency p50, pairs QoS 1 at 2,000 msgs/s", ["pairs", "--qos", "1", "--pairs", "100", "--rate", "2000"],
             "latency/p50_us"),
            ("latency p99, pairs QoS 1 at 2,000 msgs/s", ["pairs", "--qos", "1", "--pairs", "100", "--rate", "2000"],
             "latency/p99_us"),
        ]
        rows = []
        results_by_argv: dict[tuple, dict[str, list]] = {}
        for name, mode, metric in scenarios:
            key = tuple(mode)
            if key not in results_by_argv:
                results: dict[str, list] = {column: [] for column in columns}
                for run in range(args.runs):
                    for column, target in columns.items():
                        log(f"{name}: {column} run {run + 1}/{args.runs}")
                        prefix = f"bench-{uuid.uuid4().hex[:6]}-"
                        results[column].append(run_bench(bench, [mode[0], *target(), *mode[1:], *flow, "--prefix", prefix],
                                                         args.duration * 3 + 120))
                results_by_argv[key] = results
            results = results_by_argv[key]
            rows.append((name, metric, {column: median_of(results[column], metric) for column in columns}))
        print("| flow | " + " | ".join(columns) + " | across ÷ one node |")
        print("|---|" + "---|" * (len(columns) + 1))
        for name, metric, values in rows:
            shown = []
            for column in columns:
                value = values[column]
                shown.append("—" if value is None else (f"{value / 1000:.2f} ms" if "latency" in metric else f"{value:,.0f}/s"))
            ratio = (values["cluster, across"] / values["one node"]) if values["one node"] else None
            print(f"| {name} | " + " | ".join(shown) + f" | {'—' if ratio is None else f'{ratio:.2f}×'} |")
    finally:
        for process in processes:
            process.stop()
        stop_process(nats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
