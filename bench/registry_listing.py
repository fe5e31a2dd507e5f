#!/usr/bin/env python3
"""ListThings against a registry of many things, as a user sees it through boto3: the
cost of one page, of a page deep in the listing, of listing everything, and of a page
filtered by thing type. Fills one data directory with the build under test (`--after`,
which writes the thing index), then measures it and, when given, an older build
(`--before`) on the same data, alternating.

    python3 bench/registry_listing.py --things 60000
    python3 bench/registry_listing.py --things 60000 --before /tmp/ferrocore.old
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare import REGION, Ferrocore, log, target_dir

TYPED = 1_000


def client(server: Ferrocore):
    import boto3

    return boto3.client("iot", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def fill(binary: Path, workdir: Path, things: int) -> None:
    server = Ferrocore(binary, workdir)
    try:
        iot = client(server)
        bench = target_dir() / "release" / "ferrocore-bench"
        made = 0
        while made < things:
            log(f"creating things: {made:,} of {things:,}")
            subprocess.run([str(bench), "create-things", "--endpoint", server.endpoint, "--prefix", f"t{made}-",
                            "--duration", "10"], capture_output=True, text=True, check=True)
            made = count(iot)
        iot.create_thing_type(thingTypeName="Meter")
        for n in range(TYPED):
            iot.create_thing(thingName=f"meter-{n:05}", thingTypeName="Meter")
    finally:
        server.stop()


def count(iot) -> int:
    total, token = 0, None
    while True:
        page = iot.list_things(maxResults=250, **({"nextToken": token} if token else {}))
        total += len(page["things"])
        token = page.get("nextToken")
        if not token:
            return total


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def measure(binary: Path, workdir: Path, samples: int) -> dict:
    server = Ferrocore(binary, workdir)
    try:
        iot = client(server)
        first = [timed(lambda: iot.list_things(maxResults=250))[0] for _ in range(samples)]
        # The token of the 100th page, then that page timed.
        token = None
        for _ in range(99):
            token = iot.list_things(maxResults=250, **({"nextToken": token} if token else {}))["nextToken"]
        deep = [timed(lambda: iot.list_things(maxResults=250, nextToken=token))[0] for _ in range(samples)]
        by_type = [timed(lambda: iot.list_things(maxResults=250, thingTypeName="Meter"))[0] for _ in range(samples)]
        everything, total = timed(lambda: count(iot))
        return {"first": first, "deep": deep, "by_type": by_type, "everything_ms": everything, "total": total}
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--things", type=int, default=60_000)
    parser.add_argument("--after", type=Path, default=target_dir() / "release" / "ferrocore")
    parser.add_argument("--before", type=Path)
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    builds = {"after": args.after, **({"before": args.before} if args.before else {})}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        fill(args.after, workdir, args.things)
        results = {name: measure(binary, workdir, args.samples) for name, binary in builds.items()}
    for name, r in results.items():
        p99 = lambda values: sorted(values)[max(0, round(0.99 * len(values)) - 1)]  # noqa: E731
        print(f"{name}: {r['total']:,} things; ListThings(250) first page median {statistics.median(r['first']):.1f} ms "
              f"(p99 {p99(r['first']):.1f}), 100th page median {statistics.median(r['deep']):.1f} ms "
              f"(p99 {p99(r['deep']):.1f}), by thing type median {statistics.median(r['by_type']):.1f} ms, "
              f"everything {r['everything_ms'] / 1000:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
