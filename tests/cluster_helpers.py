"""A cluster of ferrocore nodes for the end-to-end suites: one PostgreSQL database, one
throw-away nats-server on loopback, three nodes (tests/test_cluster.py,
tests/test_cluster_haproxy.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config

from conftest import FerrocoreServer, ferrocore_binary, free_port
from gateway_helpers import MqttClient
from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY, unique_name

NODES = ("n1", "n2", "n3")


def uid() -> str:
    return uuid.uuid4().hex[:10]


class Nats:
    """A throw-away nats-server on loopback that requires a user and password (the nodes
    give them in the URL, as users configure them)."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.url = f"nats://ferro:p%40ss@127.0.0.1:{self.port}"
        self.log = tmp_path / "nats.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "--user", "ferro",
                                          "--pass", "p@ss"],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "Server is ready" in self.log.read_text(errors="replace")[offset:]:
                return
            time.sleep(0.05)
        pytest.fail(f"nats-server did not start:\n{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Relay:
    """A TCP relay from a loopback port to NATS that can go silent: `pause` stops every
    byte both ways with the connections left open (a network partition as a node sees
    it: nothing breaks, nothing arrives), `resume` lets them flow again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, nats_url: str) -> str:
        return nats_url.replace(f":{self.target_port}", f":{self.port}")

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def pause(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.flowing.set()
        self.listener.close()


class Node(FerrocoreServer):
    """A ferrocore node of the cluster."""

    def __init__(self, binary, tmp_path, node_id: str, store_url: str, nats_url: str):
        data_dir = tmp_path / f"data-{node_id}"
        data_dir.mkdir()
        super().__init__(binary, data_dir, tmp_path / f"ferrocore-{node_id}.log")
        self.node_id = node_id
        self.store_url = store_url
        self.nats_url = nats_url

    @property
    def command(self) -> list[str]:
        return [*super().command, "--cluster-url", self.nats_url, "--node-id", self.node_id]

    def kill(self) -> None:
        """kill -9: no shutdown, nothing flushed by the process itself."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: alive to the kernel and NATS (its sockets stay open), answering nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def revive(self) -> None:
        """Starts the node again and waits until it hears both of its peers."""
        self.start()
        wait_until(lambda: len(self.health()[1]["cluster"]["peers"]) == len(NODES) - 1,
                   f"{self.node_id} back with its peers")

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"{self.endpoint}/metrics", timeout=5) as r:
            text = r.read().decode()
        found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, config=Config(retries={"max_attempts": 0}))


class Device:
    """A thing with an ACTIVE certificate and a policy allowing everything."""

    def __init__(self, iot, directory, ca_pem: str, policy: str):
        directory.mkdir()
        self.files = directory
        self.thing = unique_name("cluster")
        iot.create_thing(thingName=self.thing)
        created = iot.create_keys_and_certificate(setAsActive=True)
        self.certificate_id = created["certificateId"]
        self.certificate_arn = created["certificateArn"]
        iot.attach_policy(policyName=policy, target=self.certificate_arn)
        iot.attach_thing_principal(thingName=self.thing, principal=self.certificate_arn)
        (directory / "cert.pem").write_text(created["certificatePem"])
        (directory / "key.pem").write_text(created["keyPair"]["PrivateKey"])
        (directory / "ca.pem").write_text(ca_pem)


def start_cluster(tmp_path_factory, relayed: str | None = None):
    """Yields a running three-node Cluster (a generator for module fixtures), or skips loudly.
    The node named `relayed` reaches NATS through the cluster's `relay`."""
    binary = ferrocore_binary()
    if not binary.is_file():
        pytest.skip(f"ferrocore binary not found at {binary}")
    if os.environ.get("FERROCORE_ENDPOINT"):
        pytest.skip("FERROCORE_ENDPOINT is set: this suite starts its own servers")
    if os.environ.get("FERROCORE_E2E_POSTGRES_URL") and os.environ.get("FERROCORE_TEST_POSTGRES_URL"):
        pytest.skip("a cluster always keeps its state in PostgreSQL: its suites ran in scripts/test's first "
                    "pass and are not repeated in the PostgreSQL pass; SKIPPED")
    server = os.environ.get("FERROCORE_E2E_POSTGRES_URL") or os.environ.get("FERROCORE_TEST_POSTGRES_URL")
    if server is None:
        pytest.skip("no PostgreSQL (FERROCORE_E2E_POSTGRES_URL or FERROCORE_TEST_POSTGRES_URL): "
                    "a cluster keeps its state in PostgreSQL; SKIPPED")
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server): SKIPPED")
    tmp_path = tmp_path_factory.mktemp("cluster")
    database = f"cluster_{os.getpid()}_{uid()}"
    subprocess.run(["psql", "--quiet", "--no-psqlrc", f"{server}/postgres", "-c", f"CREATE DATABASE {database}"],
                   check=True, capture_output=True, timeout=30)
    nats = Nats(tmp_path)
    nats.start()
    relay = Relay(nats.port) if relayed else None
    nodes = [Node(binary, tmp_path, name, f"{server}/{database}", relay.url(nats.url) if name == relayed else nats.url)
             for name in NODES]
    try:
        for node in nodes:
            node.start()
        wait_until(lambda: all(len(n.health()[1]["cluster"]["peers"]) == 2 for n in nodes), "every node sees two peers")
        iot = nodes[0].client("iot")
        policy = unique_name("everything")
        iot.create_policy(policyName=policy, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}))
        with urllib.request.urlopen(f"{nodes[0].endpoint}/ca.pem", timeout=10) as r:
            ca_pem = r.read().decode()
        cluster = Cluster(nodes, nats, iot, policy, ca_pem, tmp_path)
        cluster.relay = relay
        yield cluster
    finally:
        for node in nodes:
            node.stop()
        nats.stop()
        if relay:
            relay.close()


class Cluster:
    def __init__(self, nodes, nats, iot, policy, ca_pem, tmp_path):
        self.nodes, self.nats, self.iot, self.policy, self.ca_pem, self.tmp_path = nodes, nats, iot, policy, ca_pem, tmp_path
        self.relay: Relay | None = None

    def device(self, iot=None) -> Device:
        return Device(iot or self.iot, self.tmp_path / f"device-{uid()}", self.ca_pem, self.policy)

    def mqtt(self, node: Node, device: Device, client_id: str | None = None, **kwargs) -> MqttClient:
        return MqttClient(node, client_id or device.thing, device=device, **kwargs)


class Counted:
    """Publishes "0", "1", ... at QoS 1 from a thread until stopped or refused (no PUBACK
    within `timeout`), keeping the numbers acknowledged."""

    def __init__(self, publisher, topic: str, timeout: float):
        self.acknowledged: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(publisher, topic, timeout), daemon=True)
        self._thread.start()

    def _run(self, publisher, topic: str, timeout: float) -> None:
        n = 0
        while not self._stop.is_set():
            if publisher.publish(topic, str(n), qos=1, timeout=timeout) != 0:
                return
            self.acknowledged.append(n)
            n += 1

    def running(self) -> bool:
        """Whether it still publishes: neither stopped nor refused."""
        return self._thread.is_alive()

    def finish(self, timeout: float) -> bool:
        """Lets the publisher end (its node died, or it was refused); false if it is still running."""
        self._thread.join(timeout)
        self._stop.set()
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()


def forgotten(cluster: Cluster, gone: Node) -> None:
    """Waits until every other node counts `gone` out: a QoS 1 publish there no longer
    waits for the receipt of a node that cannot send it (it would be refused)."""
    others = [n for n in cluster.nodes if n is not gone]
    wait_until(lambda: all(gone.node_id not in {p["node"] for p in n.health()[1]["cluster"]["peers"]} for n in others),
               f"every node to count {gone.node_id} out")


def resumes_with(cluster: Cluster, node: Node, device: Device, client_id: str, topic: str, count: int) -> None:
    """The persistent session of `client_id` resumes on `node` (session present) with the
    QoS 1 messages "0" to "count - 1" on `topic` owed to it, then disconnects."""
    resumed = cluster.mqtt(node, device, client_id, clean_session=False)
    try:
        assert resumed.connect() == 0, f"CONNACK on {node.node_id}"
        assert resumed.connacks[0][1] is True, f"session present on {node.node_id}"
        resumed.wait_message(topic, count)
        assert sorted(int(m.payload) for m in resumed.messages_on(topic)) == list(range(count))
    finally:
        resumed.close()


def wait_until(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, KeyError):
            pass
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting until {what}")


