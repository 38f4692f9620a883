"""``vlaa-data doctor``: its verdicts, its exit code, and that it never shows a key.

Endpoints are the scripted server on 127.0.0.1 or a closed port there; the slow checks run in
the CLI subprocess, the rest through the library, which is where the logic lives.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from vlaa_data.doctor import STATUSES, Check, environment, model_checks, workspace_checks
from vlaa_data.lock import WriterLock
from vlaa_data.settings import load_settings
from vlaa_data.testing.server import ScriptedServer

SECRET = "sk-test-DOCTOR-SECRET-123"
KEY_VAR = "DOCTOR_TEST_KEY"
# Keys the built-in presets read, set to fakes so that only what a test is about can fail.
FAKE_KEYS = {"OPENAI_API_KEY": SECRET, "DEEPSEEK_API_KEY": SECRET}


class RecordingServer(ScriptedServer):
    """The scripted server, also recording the Authorization header of each GET /v1/models;
    with ``refuse``, it answers 401 quoting the key, as OpenAI does (partly)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.models_auth: list[str | None] = []
        self.refuse = False

    async def _models(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.models_auth.append(auth)
        if self.refuse:
            error = {"message": f"Incorrect API key provided: {auth}", "type": "auth"}
            return web.json_response({"error": error}, status=401)
        return await super()._models(request)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer(models=["scripted-vlm", "scripted-r1"]) as running:
        yield running


def use_server(root: Path, server: ScriptedServer, *, aha_model: str = "scripted-r1") -> None:
    """Every LLM step of the workspace on ``server``, its key in ``$DOCTOR_TEST_KEY``."""
    config = root / "vlaa.toml"
    text = config.read_text(encoding="utf-8")
    for model, preset in [
        ("gpt-4o", "doc-vlm"),
        ("deepseek-r1", "doc-r1"),
        ("gpt-3.5-turbo", "doc-r1"),
        ("gpt-4o-mini", "doc-aha"),
    ]:
        text = text.replace(f'model = "{model}"', f'model = "{preset}"')
    for preset, model in [("doc-vlm", "scripted-vlm"), ("doc-r1", "scripted-r1")]:
        text += f'\n[presets.{preset}]\nbase_url = "{server.url}"\nmodel = "{model}"\n'
        text += f'api_key_env = "{KEY_VAR}"\n'
    text += f'\n[presets.doc-aha]\nbase_url = "{server.url}/"\nmodel = "{aha_model}"\n'
    text += f'api_key_env = "{KEY_VAR}"\n'
    config.write_text(text, encoding="utf-8")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def by_name(report: dict) -> dict[str, dict[str, str]]:
    return {check["name"]: check for check in report["checks"]}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
    }


def test_reachable_endpoint_is_checked_once_and_the_key_never_shows(
    cli, workspace: Path, server: RecordingServer
) -> None:
    use_server(workspace, server)
    env = {KEY_VAR: SECRET}

    table = cli("doctor", "-w", workspace, env=env)
    result = cli("doctor", "--json", "-w", workspace, env=env)

    for run in (table, result):
        assert run.returncode == 0, run.stdout + run.stderr
        assert SECRET not in run.stdout + run.stderr
        assert "SECRET" not in run.stdout + run.stderr
    assert "endpoint" in table.stdout and KEY_VAR in table.stdout
    checks = by_name(json.loads(result.stdout))
    assert checks[f"key {KEY_VAR}"]["status"] == "ok"
    assert checks[f"key {KEY_VAR}"]["detail"].startswith("set")
    endpoints = [name for name in checks if name.startswith("endpoint ")]
    assert endpoints == [f"endpoint {server.url}"]  # five steps, one endpoint, one request
    assert checks[endpoints[0]]["status"] == "ok"
    assert "scripted-r1" in checks[endpoints[0]]["detail"]
    assert checks["model distill"]["detail"] == f"doc-r1: scripted-r1 at {server.url}"
    assert server.models_auth == [f"Bearer {SECRET}"] * 2  # one per doctor run


def test_unreachable_endpoint_fails_with_a_one_line_reason(cli, workspace: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"

    result = cli(
        "doctor", "--json", "--base-url", url, "--timeout", "3", "-w", workspace, env=FAKE_KEYS
    )

    assert result.returncode == 1
    checks = by_name(json.loads(result.stdout))
    assert [name for name in checks if name.startswith("endpoint ")] == [f"endpoint {url}"]
    failed = checks[f"endpoint {url}"]
    assert failed["status"] == "fail"
    assert failed["detail"].startswith("unreachable: ")
    assert "\n" not in failed["detail"] and "127.0.0.1" in failed["detail"]
    assert failed["fix"]
    assert result.stderr.strip().count("\n") == 0
    assert f"endpoint {url}" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_missing_key_is_named_and_no_key_is_shown(workspace: Path) -> None:
    settings = load_settings(workspace / "vlaa.toml", environ={})

    checks = model_checks(settings, offline=True, environ={"OPENAI_API_KEY": SECRET})

    found = {check.name: check for check in checks}
    missing = found["key DEEPSEEK_API_KEY"]
    assert missing.status == "fail"
    assert "missing" in missing.detail and "distill" in missing.detail
    assert "export DEEPSEEK_API_KEY=" in missing.fix
    assert found["key OPENAI_API_KEY"].status == "ok"
    assert found["endpoint https://api.deepseek.com"].status == "skip"
    assert all(SECRET not in check.detail + check.fix for check in checks)


def test_a_key_only_the_judge_needs_is_a_warning(workspace: Path, server: ScriptedServer) -> None:
    use_server(workspace, server)
    text = (workspace / "vlaa.toml").read_text(encoding="utf-8")
    text = text.replace('model = "doc-r1"', 'model = "local-r1"')
    text = text.replace('model = "doc-vlm"', 'model = "local-qwen2.5-vl"')
    (workspace / "vlaa.toml").write_text(text, encoding="utf-8")
    settings = load_settings(workspace / "vlaa.toml", environ={})

    checks = {c.name: c for c in model_checks(settings, offline=True, environ={})}

    assert checks[f"key {KEY_VAR}"].status == "warn"  # only [aha] reads it
    assert "filter aha --method model" in checks[f"key {KEY_VAR}"].detail


def test_a_preset_moved_to_another_endpoint_needs_no_key(
    workspace: Path, server: RecordingServer
) -> None:
    settings = load_settings(workspace / "vlaa.toml", environ={})

    checks = {c.name: c for c in model_checks(settings, base_url=server.url, environ={})}

    assert checks["key OPENAI_API_KEY"].status == "ok"
    assert checks["key OPENAI_API_KEY"].detail.startswith("not set")
    assert checks[f"endpoint {server.url}"].status == "warn"  # it serves none of gpt-4o, …
    assert "gpt-4o (caption)" in checks[f"endpoint {server.url}"].detail
    assert server.models_auth == [None]  # asked once, with no key to send


def test_a_model_the_endpoint_does_not_list_is_a_warning(
    workspace: Path, server: ScriptedServer
) -> None:
    use_server(workspace, server, aha_model="not-served")
    settings = load_settings(workspace / "vlaa.toml", environ={})

    checks = model_checks(settings, environ={KEY_VAR: SECRET})

    [endpoint] = [c for c in checks if c.name.startswith("endpoint ")]
    assert endpoint.status == "warn"
    assert "not-served (aha)" in endpoint.detail
    assert "scripted-vlm" in endpoint.detail


def test_the_scripted_stand_in_is_named_as_such(workspace: Path, server: RecordingServer) -> None:
    use_server(workspace, server)
    settings = load_settings(workspace / "vlaa.toml", environ={})
    checks = {c.name: c for c in model_checks(settings, environ={KEY_VAR: SECRET})}
    detail = checks[f"endpoint {server.url}"].detail
    assert "the scripted stand-in server: placeholder replies" in detail
    with RecordingServer(models=["scripted-vlm", "scripted-r1"], identify=False) as real:
        checks = {
            c.name: c for c in model_checks(settings, base_url=real.url, environ={KEY_VAR: SECRET})
        }
        assert checks[f"endpoint {real.url}"].status == "ok"
        assert "stand-in" not in checks[f"endpoint {real.url}"].detail


def test_a_refused_key_or_a_wrong_path_says_so_without_the_key(
    workspace: Path, server: RecordingServer
) -> None:
    use_server(workspace, server)
    settings = load_settings(workspace / "vlaa.toml", environ={})
    server.refuse = True

    [refused] = [c for c in model_checks(settings, environ={KEY_VAR: SECRET}) if c.status != "ok"]
    root = server.url.removesuffix("/v1")
    wrong = model_checks(settings, base_url=root, environ={KEY_VAR: SECRET})

    assert (
        refused.status == "fail" and refused.detail == f"HTTP 401: it refuses the key in {KEY_VAR}"
    )
    assert SECRET not in refused.detail + refused.fix
    [not_found] = [c for c in wrong if c.name == f"endpoint {root}"]
    assert not_found.status == "warn" and "HTTP 404" in not_found.detail
    assert "/v1" in not_found.fix


def test_outside_a_workspace_the_other_checks_still_run(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    result = cli("doctor", "--offline", "--json", cwd=empty, env=FAKE_KEYS)

    assert result.returncode == 1
    report = json.loads(result.stdout)
    checks = by_name(report)
    assert checks["workspace"]["status"] == "fail"
    assert "no workspace" in checks["workspace"]["detail"]
    assert f"vlaa-data init {empty}" in checks["workspace"]["fix"]
    assert checks["python"]["status"] == "ok"
    assert checks["model distill"]["status"] == "ok"  # the defaults' presets
    assert checks["key DEEPSEEK_API_KEY"]["status"] == "ok"
    assert "database" not in checks
    assert report["healthy"] is False
    assert result.stderr.strip() == "doctor: 1 failed: workspace"


def test_a_stale_lock_and_unwritten_replies_are_reported(workspace: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (workspace / "vlaa.lock").write_text(str(gone.pid), encoding="ascii")
    (workspace / "journal").mkdir()
    line = json.dumps({"result": {"sample_id": "s", "step": "caption"}}) + "\n"
    (workspace / "journal" / "run1.0.jsonl").write_text(line * 2, encoding="utf-8")
    before = snapshot(workspace)

    checks, settings = workspace_checks(workspace, environ={})

    found = {check.name: check for check in checks}
    assert found["lock"].status == "warn"
    assert f"PID {gone.pid}" in found["lock"].detail and "stale" in found["lock"].detail
    assert f"vlaa-data init {workspace}" in found["lock"].fix
    assert found["journal"].status == "warn"
    assert found["journal"].detail.startswith("2 replies in 1 journal files")
    assert found["database"].status == "ok" and found["schema"].status == "ok"
    assert settings is not None
    assert snapshot(workspace) == before  # nothing replayed, nothing written


def test_a_running_writer_is_left_alone(workspace: Path) -> None:
    with WriterLock(workspace / "vlaa.lock"):
        checks, _ = workspace_checks(workspace, environ={})

    found = {check.name: check for check in checks}
    assert found["lock"].status == "ok" and f"PID {os.getpid()}" in found["lock"].detail
    assert found["database"].status == "skip"


def test_a_broken_toml_fails_and_names_the_field(workspace: Path) -> None:
    with (workspace / "vlaa.toml").open("a", encoding="utf-8") as config:
        config.write("\n[llm2]\nx = 1\n")

    checks, settings = workspace_checks(workspace, environ={})

    found = {check.name: check for check in checks}
    assert found["vlaa.toml"].status == "fail" and "llm2" in found["vlaa.toml"].detail
    assert settings is None


def test_missing_extras_and_torchvision_are_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = environment._installed
    monkeypatch.setattr(
        environment, "_installed", lambda name: None if name in ("trl", "vllm") else installed(name)
    )
    monkeypatch.setattr(
        environment, "find_spec", lambda name: None if name == "torch" else object()
    )

    found = {check.name: check for check in environment.environment_checks()}

    assert found["extra train"].status == "warn" and "trl (missing)" in found["extra train"].detail
    assert found["extra train"].fix.startswith("pip install 'vlaa-data[train]'")
    assert "torch==2.13.0" in found["extra train"].fix  # never an unpinned torch on CPU
    assert found["extra gpu"].fix.startswith("pip install 'vlaa-data[gpu]'")
    assert found["torchvision"].status == "warn"
    assert found["torchvision"].fix == "pip uninstall torchvision"
    assert found["gpu"].status == "skip"  # torch absent: never imported
    assert found["dependencies"].status == "ok"
    assert {"python", "vlaa-data", "duckdb", "aiohttp"} <= set(found)


@pytest.mark.parametrize("vllm", [None, "0.31.0"])
def test_torchvision_is_a_warning_unless_vllm_needs_it(
    monkeypatch: pytest.MonkeyPatch, vllm: str | None
) -> None:
    versions = {"torchvision": "0.28.0", "vllm": vllm}
    monkeypatch.setattr(environment, "_installed", versions.get)
    monkeypatch.setattr(environment, "find_spec", lambda name: object())

    check = environment._torchvision()

    if vllm is None:
        assert (check.status, check.fix) == ("warn", "pip uninstall torchvision")
        assert check.detail.startswith("0.28.0 is installed")
    else:
        assert (check.status, check.fix) == ("ok", "")
        assert check.detail == "0.28.0 (vllm 0.31.0 needs it)"


def test_visible_gpus_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CUDA machine in CI: a stand-in torch reports one device."""
    device = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30)
    cuda = SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 1, get_device_properties=lambda i: device
    )
    fake = SimpleNamespace(__version__="2.13.0", version=SimpleNamespace(cuda="12.8"), cuda=cuda)
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setattr(environment, "find_spec", lambda name: object())

    gpu = environment._gpu()

    assert gpu.status == "ok"
    assert gpu.detail == "CUDA 12.8; 0: NVIDIA H100 80GB HBM3 (80 GiB)"


def test_healthy_workspace_offline_exits_zero_with_the_json_shape(cli, workspace: Path) -> None:
    before = snapshot(workspace)

    result = cli("doctor", "--offline", "--json", "-w", workspace, env=FAKE_KEYS)

    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"workspace", "healthy", "summary", "checks"}
    assert report["healthy"] is True and report["workspace"] == str(workspace)
    assert list(report["summary"]) == list(STATUSES)
    assert sum(report["summary"].values()) == len(report["checks"])
    for check in report["checks"]:
        assert set(check) == set(Check.__dataclass_fields__)
        assert check["status"] in STATUSES and "\n" not in check["detail"]
    checks = by_name(report)
    for name in ("duckdb", "aiohttp", "extra train", "lock", "journal", "schema", "samples"):
        assert checks[name]["status"] in ("ok", "warn"), checks[name]
    assert checks["gpu"]["status"] != "fail"
    assert checks["database"]["status"] == "ok"
    assert checks["endpoint https://api.openai.com/v1"]["status"] == "skip"
    assert snapshot(workspace) == before
