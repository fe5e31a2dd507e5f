"""pytest fixtures: start (or attach to) a ferrocore server and hand out AWS clients.

Environment:
  FERROCORE_ENDPOINT  use an already-running server at this URL (tests that need to
                      restart the server are skipped then).
  FERROCORE_BIN       path of the ferrocore binary; default
                      $CARGO_TARGET_DIR/release/ferrocore if CARGO_TARGET_DIR is set,
                      else <repo>/target/release/ferrocore.
  FERROCORE_E2E_POSTGRES_URL
                      run every server the tests start on PostgreSQL: each gets a new
                      database on this server (postgres://user@host:port, a user that may
                      create databases) instead of SQLite in its data directory.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest
from botocore.config import Config

from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 15.0
LOG_TAIL_CHARS = 8000


def ferrocore_binary() -> Path:
    if os.environ.get("FERROCORE_BIN"):
        return Path(os.environ["FERROCORE_BIN"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "ferrocore"
    return REPO_ROOT / "target" / "release" / "ferrocore"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DATABASE_NUMBERS = itertools.count()


def new_postgres_database() -> str | None:
    """A new, empty database on FERROCORE_E2E_POSTGRES_URL's server (its URL), or None."""
    server = os.environ.get("FERROCORE_E2E_POSTGRES_URL")
    if not server:
        return None
    name = f"e2e_{os.getpid()}_{next(_DATABASE_NUMBERS)}"
    subprocess.run(
        ["psql", "--quiet", "--no-psqlrc", f"{server}/postgres", "-c", f"CREATE DATABASE {name}"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return f"{server}/{name}"


class FerrocoreServer:
    """A ferrocore process owned by the test session."""

    can_restart = True

    def __init__(self, binary: Path, data_dir: Path, log_path: Path):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.api_port = free_port()
        self.mqtt_port = free_port()
        self.https_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.api_port}"
        self.proc: subprocess.Popen | None = None
        self.exit_codes: list[int] = []  # exit code of every stop, for diagnosis
        # Kept across restarts, like the data directory.
        self.store_url = new_postgres_database()

    @property
    def command(self) -> list[str]:
        store = ["--store-url", self.store_url] if self.store_url else []
        return [
            str(self.binary),
            "serve",
            "--data-dir", str(self.data_dir),
            *store,
            "--api-addr", f"127.0.0.1:{self.api_port}",
            "--mqtt-addr", f"127.0.0.1:{self.mqtt_port}",
            "--https-addr", f"127.0.0.1:{self.https_port}",
        ]

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"
        return text[-LOG_TAIL_CHARS:]

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== starting: {' '.join(self.command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir.parent,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"ferrocore exited with code {self.proc.returncode} during startup.\n"
                    f"--- log {self.log_path} ---\n{self.log_tail()}",
                    pytrace=False,
                )
            if self._healthy():
                return
            time.sleep(0.2)
        self.stop()
        pytest.fail(
            f"ferrocore did not answer 200 on {self.endpoint}/health within {STARTUP_TIMEOUT}s.\n"
            f"--- log {self.log_path} ---\n{self.log_tail()}",
            pytrace=False,
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # only the process this fixture started
            self.proc.wait()
            with open(self.log_path, "ab") as log:
                log.write(b"\n===== killed: no exit within SHUTDOWN_TIMEOUT after SIGTERM\n")
        self.exit_codes.append(self.proc.returncode)

    def restart(self) -> None:
        """SIGTERM, then start again with the same data dir and ports, and wait until healthy."""
        self.stop()
        self.start()


class ConfiguredServer(FerrocoreServer):
    """ferrocore started with `--config <file>` (for suites that need their own settings)."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, config: Path):
        super().__init__(binary, data_dir, log_path)
        self.config = config

    @property
    def command(self) -> list[str]:
        return [*super().command, "--config", str(self.config)]


def configured_server(tmp_path_factory, name: str, config_text: str):
    """A ferrocore of the test module's own, started with `config_text` as its config file
    (a generator for module fixtures: `yield from configured_server(...)`)."""
    if os.environ.get("FERROCORE_ENDPOINT"):
        pytest.skip(f"FERROCORE_ENDPOINT is set: the {name} tests start their own server with a config file")
    binary = ferrocore_binary()
    if not binary.is_file():
        pytest.fail(f"ferrocore binary not found at {binary}", pytrace=False)
    base = tmp_path_factory.mktemp(f"ferrocore-{name}")
    (base / "data").mkdir()
    config = base / "ferrocore.toml"
    config.write_text(config_text)
    srv = ConfiguredServer(binary, base / "data", base / "ferrocore.log", config)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class ExternalServer:
    """A server the tests did not start (FERROCORE_ENDPOINT)."""

    can_restart = False

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.rstrip("/")
        self.api_port = urlparse(self.endpoint).port
        self.data_dir = None

    def log_tail(self) -> str:
        return "<external server: no log available>"

    def restart(self) -> None:
        pytest.skip("FERROCORE_ENDPOINT is set: the tests cannot restart an external server")


_SERVER = None  # for the failure-report hook below


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    global _SERVER
    external = os.environ.get("FERROCORE_ENDPOINT")
    if external:
        _SERVER = ExternalServer(external)
        yield _SERVER
        return

    binary = ferrocore_binary()
    if not binary.is_file():
        pytest.fail(
            f"ferrocore binary not found at {binary}. Build it (cargo build --release), "
            "set FERROCORE_BIN, or point FERROCORE_ENDPOINT at a running server.",
            pytrace=False,
        )
    base = tmp_path_factory.mktemp("ferrocore")
    data_dir = base / "data"
    data_dir.mkdir()
    srv = FerrocoreServer(binary, data_dir, base / "ferrocore.log")
    _SERVER = srv
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        _SERVER = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of the server log to every failed test report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and isinstance(_SERVER, FerrocoreServer):
        report.sections.append(("ferrocore log (tail)", _SERVER.log_tail()))


@pytest.fixture(scope="session")
def client_factory(server):
    """make_client(service, access_key=..., secret_key=...) -> boto3 client for the server.

    Credentials are explicit so nothing from ~/.aws or the environment leaks in.
    Retries are off: a test must see the server's first answer. Clients are cached.
    """
    cache = {}

    def make_client(service: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        key = (service, access_key, secret_key)
        if key not in cache:
            cache[key] = _new_client(service, access_key, secret_key)
        return cache[key]

    def _new_client(service, access_key, secret_key):
        return boto3.Session(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=REGION,
        ).client(
            service,
            endpoint_url=server.endpoint,
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )

    return make_client


@pytest.fixture
def iot(client_factory):
    return client_factory("iot")


@pytest.fixture
def sts(client_factory):
    return client_factory("sts")
