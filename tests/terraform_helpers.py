"""Running terraform (hashicorp/aws 5.100.0 from the local mirror /opt/tf-plugins) against
ferrocore: the CLI configuration, environment scrubbing and provider mirror shared by the
Terraform tests (tests/test_terraform_*.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

TERRAFORM_DIR = Path(__file__).resolve().parent / "terraform"
PLUGIN_MIRROR = Path("/opt/tf-plugins")
PROVIDER_ADDRESS = "registry.terraform.io/hashicorp/aws"
COMMAND_TIMEOUT = 900

CLI_CONFIG = f"""
provider_installation {{
  filesystem_mirror {{
    path    = "{PLUGIN_MIRROR}"
    include = ["{PROVIDER_ADDRESS}"]
  }}
  direct {{
    exclude = ["{PROVIDER_ADDRESS}"]
  }}
}}
"""

APPLY = ("apply", "-auto-approve", "-input=false", "-no-color")
PLAN_CHECK = ("plan", "-detailed-exitcode", "-input=false", "-no-color")
DESTROY = ("destroy", "-auto-approve", "-input=false", "-no-color")


class Terraform:
    """Runs terraform in one working directory; every command's output goes to stdout,
    which pytest shows for a failed test."""

    def __init__(self, binary: str, workdir: Path, env: dict):
        self.binary, self.workdir, self.env = binary, workdir, env

    def __call__(self, *args: str, ok_codes=(0,)) -> subprocess.CompletedProcess:
        cmd = [self.binary, *args]
        result = subprocess.run(
            cmd, cwd=self.workdir, env=self.env, capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT,
        )
        print(f"$ {' '.join(cmd)}  (exit {result.returncode})\n{result.stdout}{result.stderr}")
        if result.returncode not in ok_codes:
            pytest.fail(
                f"terraform {args[0]} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
                pytrace=False,
            )
        return result

    def outputs(self) -> dict:
        """`terraform output -json` as {name: value} (sensitive values included)."""
        return {k: v["value"] for k, v in json.loads(self("output", "-json").stdout).items()}

    def has_state(self) -> bool:
        path = self.workdir / "terraform.tfstate"
        if not path.exists():
            return False
        return bool(json.loads(path.read_text() or "{}").get("resources"))


def terraform_binary_or_skip(what: str) -> str:
    """The terraform binary; skips (with the reason in the -ra summary) when it or the
    provider mirror is missing."""
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip(f"terraform is not on PATH: {what} did not run")
    if not (PLUGIN_MIRROR / PROVIDER_ADDRESS).is_dir():
        pytest.skip(f"no hashicorp/aws provider in the mirror {PLUGIN_MIRROR}: {what} did not run")
    return binary


def prepare(server, tmp_path: Path, config: str, variables: dict | None = None) -> Terraform:
    """Copy tests/terraform/<config> into tmp_path, write the CLI configuration, build a
    scrubbed environment (endpoint, suffix and `variables` as TF_VAR_*) and run `init`."""
    binary = terraform_binary_or_skip(f"the Terraform {config} test")
    workdir = tmp_path / config
    shutil.copytree(
        TERRAFORM_DIR / config, workdir, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
    )
    cli_config = tmp_path / "terraform.rc"
    cli_config.write_text(CLI_CONFIG)

    # nothing inherited may steer terraform or the provider (TF_CLI_ARGS*, TF_VAR_*, profiles);
    # TF_LOG/TF_LOG_PATH are kept for debugging.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TF_")) or k in ("TF_LOG", "TF_LOG_PATH")
    }
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        TF_VAR_endpoint=server.endpoint,
        TF_VAR_suffix=uuid.uuid4().hex[:10],
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),  # absent: ignore the user's profiles
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
    )
    env.update({f"TF_VAR_{k}": str(v) for k, v in (variables or {}).items()})
    tf = Terraform(binary, workdir, env)
    tf("init", "-input=false", "-no-color")
    return tf


def destroy_leftovers(tf: Terraform | None) -> None:
    """Best effort when a test stopped before its own destroy."""
    if tf is not None and tf.has_state():
        tf(*DESTROY, ok_codes=(0, 1))


def gone(call) -> bool:
    """True when `call()` fails with ResourceNotFoundException (the resource was deleted)."""
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"] == "ResourceNotFoundException"
    return False
