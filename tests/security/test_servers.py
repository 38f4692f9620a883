"""Every server the tests start listens on loopback only, and asking for more is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.release.test_push import FakeHub
from vlaa_data.testing.serve import TransformersServe
from vlaa_data.testing.server import ScriptedServer, is_loopback


def listening(pid: int, port: int) -> set[str]:
    """The addresses process ``pid`` listens on at ``port``."""
    return {
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", {"127.0.0.1"}), ("::1", {"::1"})])
def test_scripted_server_listens_where_asked_on_loopback(host: str, expected: set[str]) -> None:
    with ScriptedServer(host=host) as server:
        assert listening(psutil.Process().pid, server.port) == expected


def test_scripted_server_on_localhost_listens_on_loopback_only() -> None:
    with ScriptedServer(host="localhost") as server:
        addresses = listening(psutil.Process().pid, server.port)
    assert addresses and all(is_loopback(a) for a in addresses)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.1", "localhost.example.com"])
def test_scripted_server_refuses_any_other_host(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ScriptedServer(host=host)


def test_scripted_server_command_line_listens_on_127_0_0_1() -> None:
    command = [sys.executable, "-m", "vlaa_data.testing.server"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            url = process.stdout.readline().split()[-1]
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert url.startswith("http://127.0.0.1:")
            assert listening(process.pid, port) == {"127.0.0.1"}
        finally:
            process.terminate()
            process.wait(timeout=10)
    refused = subprocess.run([*command, "--host", "0.0.0.0"], capture_output=True, text=True)
    assert refused.returncode == 2 and "unrecognized arguments: --host" in refused.stderr


def test_transformers_serve_refuses_a_host(tmp_path: Path) -> None:
    for extra in (("--host", "0.0.0.0"), ("--host=0.0.0.0",)):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
            TransformersServe("model", log_path=tmp_path / "log", extra_args=extra)


@pytest.mark.parametrize(
    "args", [["--host", "0.0.0.0"], ["--host=::"], ["m", "--host", "10.1.1.1"]]
)
def test_serve_command_line_refuses_non_loopback_hosts(args: list[str]) -> None:
    # Refused before transformers is even imported: no socket is ever opened.
    command = [sys.executable, "-m", "vlaa_data.testing.serve", *args]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: vlaa_data.testing.serve binds loopback")


def test_transformers_serve_is_only_found_on_127_0_0_1() -> None:
    # TransformersServe starts only once uvicorn reports this address: a server that bound
    # anywhere else would never count as started (the slow tests start it for real).
    from vlaa_data.testing.serve import _LISTENING

    assert _LISTENING.search("Uvicorn running on http://127.0.0.1:8123 (Press CTRL+C")
    assert not _LISTENING.search("Uvicorn running on http://0.0.0.0:8123 (Press CTRL+C")


def test_the_stand_in_hub_listens_on_127_0_0_1() -> None:
    hub = FakeHub()
    try:
        host, port = hub.server.server_address[:2]
        assert host == "127.0.0.1"
        assert listening(psutil.Process().pid, port) == {"127.0.0.1"}
    finally:
        hub.server.server_close()
