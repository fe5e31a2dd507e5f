#!/usr/bin/env python3
"""A/B of two ferrocore builds on this machine, in one run: each round starts each build
in turn on a fresh data directory and runs the same flows against it; prints every rate
and the ratio of medians (after ÷ before). The machine is shared and noisy: compare the
ratio, not the absolute rates.

    python3 bench/ab.py --before /tmp/ferrocore.old --after target/release/ferrocore
    python3 bench/ab.py --before OLD --after NEW --modes fan-out,pairs --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from compare import Ferrocore, broker_args, provision, run_bench, target_dir

MODES = {
    "fan-in": ["fan-in", "--qos", "0"],
    "fan-in-qos1": ["fan-in", "--qos", "1"],
    "fan-out": ["fan-out", "--qos", "0", "--subscribers", "100"],
    "pairs": ["pairs", "--qos", "1", "--pairs", "100"],
    "handshakes": ["handshakes", "--concurrency", "8"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the ferrocore binary to compare against")
    parser.add_argument("--after", type=Path, default=target_dir() / "release" / "ferrocore")
    parser.add_argument("--modes", default="fan-in,fan-in-qos1,fan-out,pairs,handshakes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0)
    args = parser.parse_args()
    bench = target_dir() / "release" / "ferrocore-bench"
    modes = args.modes.split(",")
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; known: {', '.join(MODES)}")
    builds = {"before": args.before, "after": args.after}
    rates: dict[tuple[str, str], list[float]] = {}
    for round_number in range(args.rounds):
        for name, binary in builds.items():
            print(f"[ab] round {round_number + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                server = Ferrocore(binary, Path(tmp))
                try:
                    files = provision(server, Path(tmp), 0)
                    for mode in modes:
                        argv = MODES[mode]
                        warmup = [] if argv[0] == "handshakes" else ["--warmup", "1"]
                        flags = [*broker_args(server.mqtt_port, files), "--duration", f"{args.duration:g}", *warmup]
                        result = run_bench(bench, [argv[0], *flags, *argv[1:]], 120)
                        rates.setdefault((mode, name), []).append(result["rate_per_sec"])
                finally:
                    server.stop()
    for mode in modes:
        before, after = rates[(mode, "before")], rates[(mode, "after")]
        ratio = statistics.median(after) / statistics.median(before)
        print(f"{mode}: before {[round(r) for r in before]} after {[round(r) for r in after]} "
              f"median ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
