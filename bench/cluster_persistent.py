"""What storing QoS 1 deliveries to live persistent sessions costs across nodes: a paho
publisher on node 1 (20 in flight) sends 3,000 QoS 1 messages to one paho subscriber on
node 2, with a clean session and then with a persistent one, three times each in turn, on
three nodes, one PostgreSQL and one nats-server started like the end-to-end suites'.
Prints the medians and their ratio (BENCHMARKS.md, section "Cluster").

    FERROCORE_BIN=target/release/ferrocore FERROCORE_TEST_POSTGRES_URL=postgres://… \
        .venv/bin/python -m pytest -q -s -p no:cacheprovider -c /dev/null bench/cluster_persistent.py
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pytest  # noqa: E402
from cluster_helpers import start_cluster, uid  # noqa: E402
from gateway_helpers import connected  # noqa: E402

MESSAGES = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory)


def messages_per_second(cluster, persistent: bool) -> float:
    n1, n2, _ = cluster.nodes
    device = cluster.device()
    topic = f"cost/{uid()}"
    subscriber = connected(cluster.mqtt(n2, device, f"sub-{uid()}", clean_session=not persistent))
    subscriber.subscribe(topic, qos=1)
    publisher = cluster.mqtt(n1, device, f"pub-{uid()}")
    publisher.paho.max_inflight_messages_set(20)
    connected(publisher)
    time.sleep(0.3)
    start = time.monotonic()
    sent = [publisher.paho.publish(topic, str(n), qos=1) for n in range(MESSAGES)]
    for info in sent:
        info.wait_for_publish(30)
    subscriber.wait_message(topic, MESSAGES, timeout=60)
    elapsed = time.monotonic() - start
    publisher.close()
    subscriber.close()
    return MESSAGES / elapsed


def test_live_persistent_deliveries_cost(cluster):
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3):
        for persistent in (False, True):
            rates[persistent].append(messages_per_second(cluster, persistent))
    clean, persistent = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"\n| clean session | persistent session | ratio |\n|---|---|---|\n"
          f"| {clean:,.0f}/s | {persistent:,.0f}/s | {persistent / clean:.2f}× |\n"
          f"runs: clean {[round(r) for r in rates[False]]}, persistent {[round(r) for r in rates[True]]}")
