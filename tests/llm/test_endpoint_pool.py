"""A step sent to a fleet of endpoints (several --base-url, or a base_url list in vlaa.toml):
requests spread over all of them, each within its own concurrency; one that is down from the
start is skipped with a note, one that dies or fails mid-run passes its requests to the others,
and only a fleet of which no endpoint answers stops the step, naming them all."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import CliRun, query
from tests.llm.conftest import closed_url, marker, r1_reply
from vlaa_data.errors import SettingsError
from vlaa_data.settings import EndpointEntry, endpoint_entries
from vlaa_data.testing.server import Reply, Responder, ScriptedServer

Servers = Callable[..., list[ScriptedServer]]


@pytest.fixture
def servers() -> Iterator[Servers]:
    """``servers(n, latency=...)``: n more scripted servers answering as the ``server`` fixture."""
    with contextlib.ExitStack() as stack:

        def start(n: int, *, latency: float = 0.05) -> list[ScriptedServer]:
            return [
                stack.enter_context(ScriptedServer(r1_reply, latency=latency)) for _ in range(n)
            ]

        yield start


def distill(cli: CliRun, root: Path, *args: str) -> tuple[int, dict, list[str]]:
    """Run distill with ``--json``: exit code, report, and the lines of stderr."""
    result = cli("distill", "-w", root, "--model", "test-r1", "--json", *args, timeout=120)
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, report, [line for line in result.stderr.splitlines() if line]


def by_endpoint(root: Path) -> dict[str, int]:
    """Current distill results per base URL they came from."""
    rows = query(
        root,
        "SELECT base_url, count(*) FROM current_results WHERE step = 'distill' GROUP BY 1",
    )
    return dict(rows)


def states(root: Path) -> Counter[str]:
    rows = query(root, "SELECT status FROM current_results WHERE step = 'distill'")
    return Counter(status for (status,) in rows)


def test_requests_spread_over_every_endpoint_each_within_its_concurrency(
    llm_workspace, cli: CliRun, servers: Servers, server: ScriptedServer
) -> None:
    root = llm_workspace(90)
    server.latency = 0.05
    fleet = [server, *servers(2)]
    # Repeated, and comma-separated: both name endpoints of one fleet.
    code, report, errors = distill(
        cli,
        root,
        "--base-url",
        fleet[0].url,
        "--base-url",
        f"{fleet[1].url},{fleet[2].url}",
        "--concurrency",
        "3",
    )

    assert code == 0, errors
    counts = {s.url: s.count for s in fleet}
    assert all(n > 0 for n in counts.values()) and sum(counts.values()) == 90
    # Each endpoint's own limit held, and was used: the fleet had 9 requests in flight.
    assert [s.peak_in_flight for s in fleet] == [3, 3, 3]
    assert report["endpoints"] == counts and report["requests"] == 90
    assert states(root) == {"done": 90}
    assert by_endpoint(root) == counts
    status = json.loads(cli("status", "-w", root, "--json").stdout)
    assert status["endpoints"]["distill"] == {
        url: {"results": n, "scripted": n} for url, n in counts.items()
    }
    table = cli("status", "-w", root).stdout
    assert all(url in table for url in counts)


def test_a_base_url_list_in_vlaa_toml_sets_each_endpoints_own_concurrency(
    llm_workspace, cli: CliRun, servers: Servers, server: ScriptedServer
) -> None:
    root = llm_workspace(60)
    server.latency = 0.05
    fleet = [server, *servers(2)]
    config = root / "vlaa.toml"
    text = config.read_text(encoding="utf-8").replace("concurrency = 64", "concurrency = 2")
    assert 'model = "deepseek-r1"' in text
    fleet_toml = (
        'model = "test-r1"\nbase_url = [\n'
        f'  {{url = "{fleet[0].url}", concurrency = 1}},\n'
        f'  {{url = "{fleet[1].url}", concurrency = 4}},\n'
        f'  "{fleet[2].url}",\n]'
    )
    config.write_text(text.replace('model = "deepseek-r1"', fleet_toml), encoding="utf-8")

    result = cli("distill", "-w", root, "--json")

    assert result.returncode == 0, result.stderr
    # The third endpoint has no limit of its own: [llm] concurrency is each endpoint's.
    assert [s.peak_in_flight for s in fleet] == [1, 4, 2]
    assert all(s.count > 0 for s in fleet) and sum(s.count for s in fleet) == 60
    assert fleet[1].count > fleet[0].count  # the larger window takes the larger share
    assert by_endpoint(root) == {s.url: s.count for s in fleet}


def test_a_reply_from_any_endpoint_of_the_fleet_is_reused(
    llm_workspace, cli: CliRun, servers: Servers, server: ScriptedServer
) -> None:
    root = llm_workspace(12)
    first, other = servers(2)
    code, _, errors = distill(cli, root, "--base-url", f"{server.url},{first.url}")
    assert code == 0, errors
    sent = server.count + first.count

    code, report, errors = distill(cli, root, "--redo", "--base-url", other.url)

    assert code == 0, errors
    assert sent == 12 and other.count == 0
    assert report["requests"] == 0 and report["outcomes"] == {"done:cached": 12}


def test_an_endpoint_down_from_the_start_is_skipped_with_a_note(
    llm_workspace, cli: CliRun, servers: Servers, server: ScriptedServer
) -> None:
    root = llm_workspace(30)
    server.latency = 0.05
    [other] = servers(1)
    down = closed_url()

    code, report, errors = distill(
        cli, root, "--base-url", f"{server.url},{down},{other.url}", "--concurrency", "3"
    )

    assert code == 0, errors
    # The window is 9, but the two that answer take 3 each at most: the rest wait.
    assert server.peak_in_flight == 3 and other.peak_in_flight == 3
    [note] = errors
    assert note.startswith(f"note: endpoint {down}: unreachable: ")
    assert note.endswith("the other 2 endpoints take them")
    assert report["notes"] == [note.removeprefix("note: ")]
    assert states(root) == {"done": 30}
    assert server.count > 0 and other.count > 0 and server.count + other.count == 30
    assert by_endpoint(root) == {server.url: server.count, other.url: other.count}
    assert report["endpoints"][down] == 0


def stop_after(victim: ScriptedServer, requests: int) -> Responder:
    """A responder that stops ``victim`` (from another thread) once it has ``requests``."""
    stopping = threading.Thread(target=victim.stop)

    def respond(request: dict, attempt: int) -> Reply:
        if victim.count >= requests and stopping.ident is None:
            stopping.start()  # the requests in flight are dropped, then connections refused
        return r1_reply(request, attempt)

    return respond


def test_an_endpoint_killed_mid_run_passes_its_requests_to_the_others(
    llm_workspace, cli: CliRun, servers: Servers, server: ScriptedServer
) -> None:
    root = llm_workspace(120)
    server.latency = 0.2  # long enough a run for the victim's re-probe to find it gone
    fleet = [server, *servers(2, latency=0.2)]
    victim = fleet[1]
    victim.responder = stop_after(victim, 10)

    code, report, errors = distill(
        cli, root, "--base-url", ",".join(s.url for s in fleet), "--concurrency", "4"
    )

    assert code == 0, errors
    assert any(f"endpoint {victim.url} stopped answering" in line for line in errors)
    # Every sample done, each paid for once: one ledger row each.
    assert states(root) == {"done": 120}
    assert query(root, "SELECT count(*) FROM llm_calls WHERE step = 'distill'") == [(120,)]
    # Sent twice only what the victim took and never answered, each resend a counted retry.
    received = [marker(body) for s in fleet for body in s.requests]
    twice = {n for n, times in Counter(received).items() if times > 1}
    assert 120 < len(received) <= 120 + report["retries"]
    assert twice and twice <= {marker(body) for body in victim.requests}
    answered = by_endpoint(root)
    assert answered[victim.url] < victim.count
    assert sum(answered.values()) == 120 and answered[fleet[0].url] > 0


@pytest.mark.parametrize(
    "failure",
    [Reply.error(503, message="overloaded"), Reply.ok("late", delay=2.0)],
    ids=["5xx", "timeout"],
)
def test_an_endpoint_failing_requests_rests_and_the_others_take_them(
    llm_workspace, cli: CliRun, servers: Servers, server: ScriptedServer, failure: Reply
) -> None:
    root = llm_workspace(120)  # about 3 s of work for the one that answers
    server.latency = 0.05
    [failing] = servers(1)
    failing.responder = lambda request, attempt: failure  # llm_workspace: timeout_s = 0.5

    code, report, errors = distill(
        cli, root, "--base-url", f"{failing.url},{server.url}", "--concurrency", "2"
    )

    assert code == 0, errors
    assert states(root) == {"done": 120}
    assert by_endpoint(root) == {server.url: 120}
    assert failing.count > 0 and report["retries"] == failing.count
    # Resting after each failure (then asked GET /models), it took far fewer than its half.
    assert failing.count <= 6


def test_a_fleet_of_which_no_endpoint_answers_stops_naming_them_all(
    llm_workspace, cli: CliRun, server: ScriptedServer
) -> None:
    root = llm_workspace(5)
    down = [closed_url(), closed_url()]

    code, report, errors = distill(cli, root, "--base-url", down[0], "--base-url", down[1])

    assert code == 1
    [line] = errors
    assert line.startswith(f"error: none of the 2 endpoints can take requests: endpoint {down[0]}")
    assert f"; endpoint {down[1]}: unreachable: " in line
    assert line.endswith("5 samples left pending: run again once it answers")
    assert report["stopped"] == "unreachable" and report["left_pending"] == 5
    assert states(root) == {} and server.count == 0


def test_a_fleet_that_all_dies_mid_run_stops_and_leaves_the_rest_pending(
    llm_workspace, cli: CliRun, servers: Servers
) -> None:
    root = llm_workspace(200)
    fleet = servers(2)
    for victim in fleet:
        victim.responder = stop_after(victim, 10)

    code, report, errors = distill(
        cli, root, "--base-url", ",".join(s.url for s in fleet), "--concurrency", "2"
    )

    assert code == 1
    line = errors[-1]
    assert line.startswith("error: none of the 2 endpoints can be reached any more: ")
    assert all(f"endpoint {s.url}: unreachable" in line for s in fleet)
    assert report["stopped"] == "unreachable"
    done = states(root)
    assert set(done) <= {"done"} and 0 < done["done"] < 200
    assert report["left_pending"] == 200 - done["done"]


def test_doctor_checks_every_endpoint_of_a_fleet_in_vlaa_toml(
    llm_workspace, cli: CliRun, server: ScriptedServer
) -> None:
    root = llm_workspace(1)
    down = closed_url()
    config = root / "vlaa.toml"
    fleet = f'model = "test-r1"\nbase_url = ["{server.url}", {{url = "{down}", concurrency = 8}}]'
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('model = "deepseek-r1"', fleet), encoding="utf-8")

    result = cli("doctor", "--json", "--timeout", "3", "-w", root)

    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["model distill"]["detail"] == f"test-r1: scripted-r1 at {server.url}, {down}"
    answered = checks[f"endpoint {server.url}"]  # a warning: it lists no scripted-r1
    assert answered["status"] == "warn" and answered["detail"].startswith("answers in ")
    assert checks[f"endpoint {down}"]["status"] == "fail"
    assert checks[f"endpoint {down}"]["detail"].startswith("unreachable: ")


def test_endpoint_entries_read_commas_lists_and_tables() -> None:
    a, b, c = "http://a:8000/v1", "http://b:8000/v1", "http://c:8000/v1"
    assert endpoint_entries(None) == [] and endpoint_entries("") == []
    assert [e.url for e in endpoint_entries(f"{a}, {b},")] == [a, b]
    entries = endpoint_entries([a, f"{b},{c}", EndpointEntry(url="http://d/v1", concurrency=8)])
    assert [(e.url, e.concurrency) for e in entries] == [
        (a, None),
        (b, None),
        (c, None),
        ("http://d/v1", 8),
    ]
    with pytest.raises(SettingsError, match="names endpoint http://a:8000/v1 twice"):
        endpoint_entries([a, f"{b},{a}/"])
