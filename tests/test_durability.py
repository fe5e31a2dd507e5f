"""Acknowledged writes survive a crash: the server is killed with SIGKILL while clients
are writing, and every write it answered with success must be there after a restart."""

from __future__ import annotations

import os
import signal
import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from conftest import FerrocoreServer, ferrocore_binary
from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY

WRITERS = 4
WRITES_PER_WRITER = 400


def client(endpoint: str):
    return boto3.client(
        "iot",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 0}, connect_timeout=2, read_timeout=5),
    )


@pytest.mark.restart
def test_acknowledged_writes_survive_sigkill(tmp_path):
    binary = ferrocore_binary()
    if not binary.is_file():
        pytest.skip(f"ferrocore binary not found at {binary}")
    if os.environ.get("FERROCORE_ENDPOINT"):
        pytest.skip("FERROCORE_ENDPOINT is set: this test needs a server it can kill")
    server = FerrocoreServer(binary, tmp_path / "data", tmp_path / "ferrocore.log")
    server.start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def write(writer: int) -> None:
        iot = client(server.endpoint)
        for i in range(WRITES_PER_WRITER):
            name = f"durable-{writer}-{i}"
            try:
                iot.create_thing(thingName=name, attributePayload={"attributes": {"n": str(i)}})
            except (ClientError, BotoCoreError):
                return  # the server died under us: this write was not acknowledged
            with lock:
                acknowledged.append(name)
                if len(acknowledged) >= WRITERS * WRITES_PER_WRITER // 4:
                    enough.set()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(timeout=120), "the writers made too little progress"
        server.proc.send_signal(signal.SIGKILL)  # the process this test started
        server.proc.wait()
    finally:
        for thread in threads:
            thread.join(timeout=60)
    with lock:
        survivors_expected = list(acknowledged)
    assert survivors_expected, "nothing was written before the crash"

    server.start()
    try:
        iot = client(server.endpoint)
        for name in survivors_expected:
            assert iot.describe_thing(thingName=name)["attributes"]["n"] == name.rsplit("-", 1)[1]
    finally:
        server.stop()
