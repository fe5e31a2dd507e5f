#!/usr/bin/env python3
"""The registry at fleet size, on SQLite and on PostgreSQL, as a user sees it through
boto3 (issue #16's table). For each store and each registry size it fills a fresh
registry with `ferrocore-bench create-things` (16 concurrent clients), builds a thing
group tree 10 × 10 × 10 deep with `--grouped` things in its leaves, one device whose
thing sits three groups deep under a policy attached to the root, and measures:

- CreateThing/s with 16 concurrent clients, at the start of the fill and at its end;
- DescribeThing, ListThings (first page and the last page of 250), ListThings by thing
  type, ListThingsInThingGroup recursive on a root (a tenth of the grouped things),
  TestAuthorization of the device's CONNECT (its permissions built from its thing's
  three groups and the root's policy; not cached): p50/p99 of `--samples` calls each;
- the server's RSS and the database's size per thing.

    python3 bench/registry_scale.py --sizes 1000,200000
    python3 bench/registry_scale.py --sizes 1000,200000 --stores sqlite   # no PostgreSQL

PostgreSQL: FERROCORE_TEST_POSTGRES_URL (postgres://user@host:port), else a throw-away
cluster from scripts/throwaway-postgres. Prints a Markdown table; `--json FILE` keeps the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from compare import REGION, REPO, Ferrocore, log, target_dir
from registry_listing import count

TYPED = 1_000
ACCOUNT = "000000000000"
CONNECT_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:client/${{iot:Connection.Thing.ThingName}}"}]})


def client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client("iot", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"max_attempts": 0},
                                                                    max_pool_connections=32))


def timed_ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50": statistics.median(ordered), "p99": ordered[max(0, round(0.99 * len(ordered)) - 1)]}


def create_things(endpoint: str, prefix: str, things: int) -> dict:
    bench = Path(os.environ.get("FERROCORE_BENCH_BIN", target_dir() / "release" / "ferrocore-bench"))
    out = subprocess.run([str(bench), "create-things", "--endpoint", endpoint, "--prefix", prefix,
                          "--duration", "20", "--count", str(things)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fill(iot, endpoint: str, size: int, grouped: int) -> dict:
    """Things up to `size` (CreateThing rates at the start and the end), the group tree, the device."""
    rates = []
    made = 0
    while made < size:
        log(f"creating things: {made:,} of {size:,}")
        result = create_things(endpoint, f"t{made}-", min(size - made, 50_000))
        rates.append(result["rate_per_sec"])
        made += result["completed"]
    iot.create_thing_type(thingTypeName="Meter")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: iot.create_thing(thingName=f"meter-{n:05}", thingTypeName="Meter"), range(TYPED)))
        for root in range(10):
            iot.create_thing_group(thingGroupName=f"r{root}")
        list(pool.map(lambda i: iot.create_thing_group(thingGroupName=f"r{i // 10}-m{i % 10}",
                                                       parentGroupName=f"r{i // 10}"), range(100)))
        list(pool.map(lambda i: iot.create_thing_group(thingGroupName=f"r{i // 100}-m{i // 10 % 10}-l{i % 10}",
                                                       parentGroupName=f"r{i // 100}-m{i // 10 % 10}"), range(1000)))

        def grouped_thing(n: int) -> None:
            leaf = n % 1000
            name = f"g-{n:06}"
            iot.create_thing(thingName=name)
            iot.add_thing_to_thing_group(thingGroupName=f"r{leaf // 100}-m{leaf // 10 % 10}-l{leaf % 10}",
                                         thingName=name)

        list(pool.map(grouped_thing, range(grouped)))
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.create_thing(thingName="device-deep")
    iot.add_thing_to_thing_group(thingGroupName="r3-m4-l5", thingName="device-deep")
    iot.attach_thing_principal(thingName="device-deep", principal=cert["certificateArn"])
    iot.create_policy(policyName="fleet-connect", policyDocument=CONNECT_POLICY)
    iot.attach_policy(policyName="fleet-connect", target=f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/r3")
    return {"create_rate_first": rates[0], "create_rate_last": rates[-1], "certificate": cert["certificateArn"]}


def measure(iot, samples: int, certificate: str) -> dict:
    total = count(iot)
    names = [t["thingName"] for t in iot.list_things(maxResults=250)["things"]]
    # The last page's token: walk the listing once.
    token, last_token = None, None
    while True:
        page = iot.list_things(maxResults=250, **({"nextToken": token} if token else {}))
        if not page.get("nextToken"):
            break
        last_token, token = page["nextToken"], page["nextToken"]
    result = {"things": total}
    calls = {
        "describe_thing": lambda i: iot.describe_thing(thingName=names[i % len(names)]),
        "list_first_page": lambda i: iot.list_things(maxResults=250),
        "list_last_page": lambda i: iot.list_things(maxResults=250, **({"nextToken": last_token} if last_token else {})),
        "list_by_type": lambda i: iot.list_things(maxResults=250, thingTypeName="Meter"),
        "list_group_recursive": lambda i: iot.list_things_in_thing_group(thingGroupName=f"r{i % 10}", recursive=True,
                                                                          maxResults=250),
        "connect_permissions": lambda i: check_connect(iot, certificate),
    }
    for name, call in calls.items():
        call(0)  # warm
        result[name] = percentiles([timed_ms(lambda: call(i)) for i in range(samples)])
    return result


def check_connect(iot, certificate: str) -> None:
    answer = iot.test_authorization(principal=certificate, clientId="device-deep", authInfos=[
        {"actionType": "CONNECT", "resources": [f"arn:aws:iot:{REGION}:{ACCOUNT}:client/device-deep"]}])
    decision = answer["authResults"][0]["authDecision"]
    if decision != "ALLOWED":
        raise RuntimeError(f"the device 3 groups deep was not allowed to connect: {decision}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def postgres_server() -> str:
    url = os.environ.get("FERROCORE_TEST_POSTGRES_URL")
    if url:
        return url
    out = subprocess.run([str(REPO / "scripts" / "throwaway-postgres"), str(os.getpid())], capture_output=True,
                         text=True, check=True).stdout
    return out.strip().splitlines()[0].split("=", 1)[1]


def new_database(server: str, name: str) -> str:
    subprocess.run(["psql", "--quiet", f"{server}/postgres", "-c", f"DROP DATABASE IF EXISTS {name}"], check=True)
    subprocess.run(["psql", "--quiet", f"{server}/postgres", "-c", f"CREATE DATABASE {name}"], check=True)
    return f"{server}/{name}"


def database_bytes(store: str, workdir: Path, url: str | None) -> int:
    if store == "sqlite":
        return sum(f.stat().st_size for f in (workdir / "ferrocore-data").glob("ferrocore.db*"))
    out = subprocess.run(["psql", "-tA", url, "-c", "SELECT pg_database_size(current_database())"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def run(store: str, size: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = new_database(args.postgres, f"scale_{size}") if store == "postgres" else None
        server = Ferrocore(args.binary, workdir, ("--store-url", url) if url else ())
        try:
            iot = client(server.endpoint)
            filled = fill(iot, server.endpoint, size, min(args.grouped, size))
            log(f"{store}, {size:,} things: measuring")
            result = {"store": store, "size": size, **filled, **measure(iot, args.samples, filled["certificate"])}
            result["rss_mb"] = rss_mb(server.proc.pid)
            result["bytes_per_thing"] = database_bytes(store, workdir, url) / result["things"]
            return result
        finally:
            server.stop()


def table(rows: list[dict]) -> str:
    header = ["store", "things", "CreateThing/s start → end", "DescribeThing p50/p99",
              "ListThings first page p50/p99", "last page p50/p99", "by type p50/p99", "group recursive p50/p99",
              "CONNECT permissions p50/p99", "RSS", "DB bytes/thing"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ms = lambda r, k: f"{r[k]['p50']:.1f} / {r[k]['p99']:.1f} ms"  # noqa: E731
    for r in rows:
        lines.append("| " + " | ".join([
            r["store"], f"{r['things']:,}", f"{r['create_rate_first']:,.0f} → {r['create_rate_last']:,.0f}",
            ms(r, "describe_thing"), ms(r, "list_first_page"), ms(r, "list_last_page"), ms(r, "list_by_type"),
            ms(r, "list_group_recursive"), ms(r, "connect_permissions"), f"{r['rss_mb']:.0f} MB",
            f"{r['bytes_per_thing']:.0f}"]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,200000")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--grouped", type=int, default=2_000, help="things placed in the group tree's leaves")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--binary", type=Path, default=target_dir() / "release" / "ferrocore")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    stores = args.stores.split(",")
    args.postgres = postgres_server() if "postgres" in stores else None
    rows = [run(store, int(size), args) for store in stores for size in args.sizes.split(",")]
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
