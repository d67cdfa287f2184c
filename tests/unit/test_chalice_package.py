"""`chalice package` still turns the app into a deployable template (no AWS credentials)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_chalice_package_emits_the_api_and_the_job_consumer(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    chalice = Path(sys.executable).with_name("chalice")
    result = subprocess.run([str(chalice), "package", str(tmp_path / "out")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    template = json.loads((tmp_path / "out" / "sam.json").read_text())
    resources = template["Resources"]
    functions = {name: r for name, r in resources.items()
                 if r["Type"] == "AWS::Serverless::Function"}
    assert "APIHandler" in functions and "RunOperations" in functions
    assert "RestAPI" in resources
    events = functions["RunOperations"]["Properties"]["Events"]
    assert any(e["Type"] == "SQS" for e in events.values())
    paths = resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    assert "/v1/zones/{uuid}" in paths and "/v1/api-jobs/{uuid}" in paths
