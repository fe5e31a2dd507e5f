#!/usr/bin/env python3
"""What topic rules cost the message path: fan-in QoS 0 throughput (ferrocore-bench) with
no rules, with 20 rules whose FROM filters match nothing, with one matching rule whose WHERE
is false, and with one matching rule that republishes every message. Configurations run in
turn (A B C D A B C D ...), medians reported with the ratio to "no rules".

Usage: python3 bench/rules_overhead.py [--runs 3] [--duration 5] [--no-build]
Prints a markdown table (for BENCHMARKS.md) and, with --json, the raw results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import urllib.request
from pathlib import Path

from compare import REGION, Ferrocore, broker_args, build, log, provision, run_bench, target_dir

ROLE = "arn:aws:iam::000000000000:role/bench"


def rules_client(ferrocore: Ferrocore):
    import boto3
    return boto3.client("iot", endpoint_url=ferrocore.endpoint, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def rules_counts(ferrocore: Ferrocore) -> tuple[float, float]:
    """(messages evaluated, messages dropped for a full rules queue) so far, from /metrics."""
    text = urllib.request.urlopen(f"{ferrocore.endpoint}/metrics", timeout=5).read().decode()
    evaluated = dropped = 0.0
    for line in text.splitlines():
        if line.startswith("ferrocore_rules_messages_total{"):
            evaluated += float(line.rsplit(" ", 1)[1])
        elif line.startswith("ferrocore_rules_messages_dropped_total{"):
            dropped += float(line.rsplit(" ", 1)[1])
    return evaluated, dropped


def set_rules(iot, rules: dict[str, str], actions: list) -> None:
    """Replaces every rule with `rules` (name → SQL), each with `actions`."""
    for existing in iot.list_topic_rules().get("rules", []):
        iot.delete_topic_rule(ruleName=existing["ruleName"])
    for name, sql in rules.items():
        iot.create_topic_rule(ruleName=name, topicRulePayload={"sql": sql, "actions": actions})


CONFIGURATIONS = {
    "no rules": ({}, []),
    "20 rules, none matching": ({f"Other{i}": f"SELECT * FROM 'other/{i}/+'" for i in range(20)}, []),
    "1 matching rule, WHERE false": ({"Filtered": "SELECT * FROM 'bench/+/in' WHERE value > 1000"}, []),
    "1 matching rule, republish each message": (
        {"Republish": "SELECT * FROM 'bench/+/in'"},
        [{"republish": {"topic": "sink/out", "roleArn": ROLE}}],
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.no_build:
        release = target_dir() / "release"
        binary, bench = release / "ferrocore", release / "ferrocore-bench"
    else:
        binary, bench = build()
    results: dict[str, list[dict]] = {name: [] for name in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ferrocore = Ferrocore(binary, workdir)
        try:
            files = provision(ferrocore, workdir, shadow_devices=0)
            iot = rules_client(ferrocore)
            flow = ["fan-in", *broker_args(ferrocore.mqtt_port, files), "--qos", "0",
                    "--duration", str(args.duration), "--warmup", "1"]
            for run in range(args.runs):
                for name, (rules, actions) in CONFIGURATIONS.items():
                    set_rules(iot, rules, actions)
                    log(f"{name}: run {run + 1}/{args.runs}")
                    before = rules_counts(ferrocore)
                    result = run_bench(bench, flow, timeout=args.duration + 60)
                    after = rules_counts(ferrocore)
                    result["rules_evaluated"], result["rules_dropped"] = (a - b for a, b in zip(after, before))
                    results[name].append(result)
        finally:
            ferrocore.stop()
    baseline = statistics.median(r["rate_per_sec"] for r in results["no rules"])
    print("| configuration | fan-in QoS 0 msgs/s (median) | vs no rules | rule evaluations / dropped (median run) |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        rate = statistics.median(r["rate_per_sec"] for r in runs)
        evaluated = statistics.median(r["rules_evaluated"] for r in runs)
        dropped = statistics.median(r["rules_dropped"] for r in runs)
        print(f"| {name} | {rate:,.0f} | {rate / baseline:.2f}× | {evaluated:,.0f} / {dropped:,.0f} |")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
