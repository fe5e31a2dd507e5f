"""A node cut off from NATS while it keeps running (a network partition): its peers count
it dead and take its sessions, so it steps down — closes its device connections and lets
go of its sessions without writing them — and its devices resume on the other nodes.
When NATS reaches it again it rejoins without taking back what moved.

The cut node (n3) reaches NATS through a relay that goes silent with its connections left
open, so nothing tells the node: it notices that its own heartbeats stop coming back."""

from __future__ import annotations

import time

import pytest

from cluster_helpers import resumes_with, start_cluster, uid, wait_until
from gateway_helpers import connected


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory, relayed="n3")


def test_a_node_cut_off_from_nats_steps_down_and_its_sessions_resume_elsewhere(cluster):
    n1, n2, n3 = cluster.nodes
    device = cluster.device()
    client_id = f"cut-{uid()}"
    topic = f"partition/{uid()}"
    online = connected(cluster.mqtt(n3, device, client_id, clean_session=False))
    assert online.subscribe(topic, qos=1) == [1]
    with cluster.mqtt(n1, device, f"pub-{uid()}") as publisher:
        connected(publisher)
        # Positive control: before the cut, n1's messages reach the device on n3.
        assert publisher.publish(topic, b"before", qos=1) == 0
        online.wait_message(topic)
        cluster.relay.pause()
        try:
            online.wait_for(lambda: online.disconnected.is_set(), "n3 to close its connections", 10)
            online.close()
            wait_until(lambda: n3.health()[0] == 503 and n3.health()[1]["cluster"]["serving"] is False,
                       "n3's /health to say it stepped down")
            assert "cut off from the cluster" in n3.log_tail()
            wait_until(lambda: "took the parked sessions of a silent peer" in n1.log_tail(), "n1 to take n3's sessions")
            for n in range(5):
                assert publisher.publish(topic, str(n), qos=1) == 0, "acknowledged while n3 is cut off"
            resumes_with(cluster, n2, device, client_id, topic, 5)
        finally:
            cluster.relay.resume()
        wait_until(lambda: "rejoined the cluster" in n3.log_tail(), "n3 to rejoin", 20)
        wait_until(lambda: n3.health()[0] == 200 and n3.health()[1]["cluster"]["serving"], "n3 to serve again")
        # n3 did not take the session back: it resumes on n3 through a claim, with what
        # was queued meanwhile on n1, each message once.
        assert publisher.publish(topic, b"after", qos=1) == 0
        back = connected(cluster.mqtt(n3, device, client_id, clean_session=False))
        try:
            assert back.connacks[0][1] is True
            back.wait_message(topic)
            time.sleep(1.0)
            assert [m.payload for m in back.messages_on(topic)] == [b"after"]
        finally:
            back.close()
