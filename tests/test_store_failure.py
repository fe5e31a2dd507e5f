"""A store that fails under a running server: its PostgreSQL is stopped. Requests get
AWS's InternalFailureException (HTTP 500), nothing is half-written, and the server serves
again once the database is back, without a restart."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REPO_ROOT, FerrocoreServer, ferrocore_binary
from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def as_server(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def client(endpoint: str):
    return boto3.client("iot", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"max_attempts": 0}, read_timeout=30))


def health(endpoint: str) -> tuple[int, str]:
    """`/health`'s status code and what it says of the store."""
    try:
        with urllib.request.urlopen(f"{endpoint}/health", timeout=10) as response:
            return response.status, json.load(response)["store"]
    except urllib.error.HTTPError as answered:
        return answered.code, json.load(answered)["store"]


def error_of(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_stopped_database_answers_internal_failure_and_the_server_recovers(tmp_path):
    binary = ferrocore_binary()
    if not binary.is_file():
        pytest.skip(f"ferrocore binary not found at {binary}")
    if os.environ.get("FERROCORE_ENDPOINT"):
        pytest.skip("FERROCORE_ENDPOINT is set: this test starts its own server")
    bin_dir = postgres_bin()
    if bin_dir is None or not any(Path(p, "psql").exists() for p in os.environ["PATH"].split(":")):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql): cannot stop a database under the server")
    # A cluster of its own, which this test stops and starts.
    out = subprocess.run([str(REPO_ROOT / "scripts" / "throwaway-postgres"), str(os.getpid())],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    exported = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    url, cluster = exported["FERROCORE_TEST_POSTGRES_URL"], Path(exported["FERROCORE_TEST_POSTGRES_DIR"])
    port = url.rsplit(":", 1)[1]
    subprocess.run(["psql", "--quiet", f"{url}/postgres", "-c", "CREATE DATABASE failing"], check=True, timeout=30)
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(cluster / "data")]

    server = FerrocoreServer(binary, tmp_path / "data", tmp_path / "ferrocore.log")
    server.store_url = f"{url}/failing"
    server.start()
    try:
        iot = client(server.endpoint)
        iot.create_thing(thingName="before")  # positive control: the store works
        assert health(server.endpoint) == (200, "ok")
        subprocess.run(as_server([*pg_ctl, "stop", "-m", "immediate"]), check=True, capture_output=True, timeout=60)

        assert error_of(lambda: iot.create_thing(thingName="during", attributePayload={"attributes": {"a": "1"}})) \
            == ("InternalFailureException", 500)
        assert error_of(lambda: iot.describe_thing(thingName="before")) == ("InternalFailureException", 500)
        assert health(server.endpoint) == (503, "unavailable")

        subprocess.run(as_server([*pg_ctl, "-l", str(cluster / "server.log"), "-w", "-t", "60", "-o",
                                  f"-c listen_addresses=127.0.0.1 -p {port} -k {cluster}", "start"]),
                       check=True, capture_output=True, timeout=90)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert iot.describe_thing(thingName="before")["thingName"] == "before"
                break
            except ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # Nothing of the failed request was written; new requests succeed.
        assert error_of(lambda: iot.describe_thing(thingName="during"))[0] == "ResourceNotFoundException"
        iot.create_thing(thingName="after")
        assert health(server.endpoint) == (200, "ok")
        names = {t["thingName"] for t in iot.list_things()["things"]}
        assert names == {"before", "after"}
    finally:
        server.stop()
