"""Running the AWS CLI (v1) against ferrocore, isolated from the user's AWS configuration."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iot_helpers import ACCESS_KEY, REGION, SECRET_KEY


def cli_base_command() -> list[str]:
    if shutil.which("aws"):
        return ["aws"]
    if importlib.util.find_spec("awscli") is not None:
        return [sys.executable, "-m", "awscli"]
    pytest.skip(
        "AWS CLI v1 not available: neither `aws` on PATH nor the awscli Python package "
        "(pip install -r tests/requirements.txt)"
    )


def make_aws_cli(endpoint: str, home: Path):
    """run(args) -> CompletedProcess, with a clean CLI environment rooted in `home`."""
    base = cli_base_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(home / "config"),  # absent: ignore the user's profiles
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )

    def run(args: list[str]) -> subprocess.CompletedProcess:
        cmd = base + ["--endpoint-url", endpoint, "--output", "json"] + args
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    return run


def run_json(aws_cli, args: list[str]):
    result = aws_cli(args)
    assert result.returncode == 0, (
        f"aws {' '.join(args)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    return json.loads(result.stdout) if result.stdout.strip() else None
