"""A password written into a base URL (``http://user:secret@host/v1``) authenticates the
requests and is stored and printed nowhere: not in the runs table's command line or settings,
not in the ledger, not in any output."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from tests.security.test_secrets import database_dump
from vlaa_data.llm.presets import redact_url
from vlaa_data.testing.server import ScriptedServer, default_responder

PASSWORD = "pw-URL-SECRET-41c7"


def test_redact_url() -> None:
    assert redact_url("https://user:pw@host.example:8443/v1") == "https://***@host.example:8443/v1"
    assert redact_url("http://token@127.0.0.1/v1?x=1") == "http://***@127.0.0.1/v1?x=1"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact_url(None) is None


def test_credentials_in_a_base_url_are_used_and_never_kept(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "vlaa_data", *args, "-w", str(workspace)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    cli("init")
    cli("collect", "synthetic", "--limit", "4", "--seed", "2")
    with ScriptedServer(default_responder) as server:
        url = server.url.replace("http://", f"http://user:{PASSWORD}@")
        outputs = [
            cli("caption", "--model", "my-vlm", "--base-url", url),
            cli("run", "--base-url", url, "--json"),
            cli("status", "--json"),
        ]
        basic = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
        assert server.requests and set(server.auth_headers) == {basic}
    dump = database_dump(workspace / "vlaa.duckdb").decode()
    assert "http://***@127.0.0.1" in dump  # the URL is kept, its password is not
    for text in [dump, *(o.stdout + o.stderr for o in outputs)]:
        assert PASSWORD not in text
    assert PASSWORD.encode() not in (workspace / "vlaa.duckdb").read_bytes()
