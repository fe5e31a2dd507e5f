"""Devices behind a TCP load balancer, as users deploy a cluster: HAProxy (the Debian
package) runs deploy/haproxy.cfg in TCP mode with TLS passed through to three ferrocore
nodes. Devices connected through it spread over the nodes, talk to each other across
them, and reconnect through it when a node dies (kill -9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cluster_helpers import forgotten, start_cluster, uid, wait_until
from conftest import free_port
from gateway_helpers import MqttClient

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory)


class HaProxy:
    def __init__(self, cluster, log: Path):
        self.mqtt_port, self.https_port, self.api_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "LISTEN_MQTT": f"127.0.0.1:{self.mqtt_port}",
                    "LISTEN_HTTPS": f"127.0.0.1:{self.https_port}", "LISTEN_API": f"127.0.0.1:{self.api_port}"}
        for i, node in enumerate(cluster.nodes, start=1):
            self.env.update({f"NODE{i}_MQTT": f"127.0.0.1:{node.mqtt_port}", f"NODE{i}_HTTPS": f"127.0.0.1:{node.https_port}",
                             f"NODE{i}_API_HOST": "127.0.0.1", f"NODE{i}_API_PORT": str(node.api_port)})
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self):
        checked = subprocess.run(["haproxy", "-c", "-f", str(CONFIG)], env=self.env, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(CONFIG)], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def haproxy(cluster):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy): SKIPPED")
    proxy = HaProxy(cluster, cluster.tmp_path / "haproxy.log")
    proxy.start()
    yield proxy
    proxy.stop()


class Balanced:
    """What a device sees: one endpoint (HAProxy's ports)."""

    def __init__(self, proxy: HaProxy):
        self.mqtt_port, self.https_port = proxy.mqtt_port, proxy.https_port


def connect_through(proxy, cluster, device, client_id, attempts: int = 20) -> MqttClient:
    """Connects through HAProxy, retrying as a device does while a dead node is being marked down."""
    for _ in range(attempts):
        client = MqttClient(Balanced(proxy), client_id, device=device)
        if client.connect(timeout=5) == 0:
            return client
        client.close()
        time.sleep(0.5)
    pytest.fail(f"{client_id} could not connect through HAProxy")


def connections(node) -> float:
    return node.metric("ferrocore_mqtt_connections")


def test_devices_behind_haproxy_spread_over_the_nodes_and_survive_the_loss_of_one(cluster, haproxy):
    device = cluster.device()
    clients = [connect_through(haproxy, cluster, device, f"spread-{n}-{uid()}") for n in range(9)]
    try:
        per_node = {node.node_id: connections(node) for node in cluster.nodes}
        assert all(count >= 1 for count in per_node.values()), f"every node holds devices: {per_node}"
        # Through one endpoint, whichever nodes they landed on, they reach each other.
        topic = f"balanced/{uid()}"
        for client in clients:
            assert client.subscribe(topic, qos=1) == [1]
        assert clients[0].publish(topic, b"hello", qos=1) == 0
        for client in clients:
            client.wait_message(topic)

        # kill -9 the node holding the most devices; its devices reconnect through HAProxy.
        victim = max(cluster.nodes, key=connections)
        held = connections(victim)
        victim.kill()
        try:
            wait_until(lambda: sum(c.disconnected.is_set() for c in clients) >= held, "the victim's devices to drop")
            time.sleep(0.5)
            lost = [c for c in clients if c.disconnected.is_set()]
            assert len(lost) == held, f"{len(lost)} devices lost their connection, {held} were on {victim.node_id}"
            survivors = [c for c in clients if c not in lost]
            back = [connect_through(haproxy, cluster, device, c.client_id) for c in lost]
            for client in back:
                assert client.subscribe(topic, qos=1) == [1]
            # QoS 1 publishes wait for the receipt of every node whose clients subscribe,
            # until the others count the dead node out.
            forgotten(cluster, victim)
            everyone = survivors + back
            assert everyone[0].publish(topic, b"after", qos=1) == 0
            for client in everyone:
                client.wait_for(lambda c=client: any(m.payload == b"after" for m in c.messages_on(topic)),
                                "the message after the loss")
            clients = everyone + lost
        finally:
            victim.start()
    finally:
        for client in clients:
            client.close()
