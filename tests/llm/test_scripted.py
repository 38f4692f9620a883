"""Placeholder data never passes for real: the scripted stand-in server says what it is, every
result records the endpoint its reply came from, status counts the stand-in's, and a run
against a real endpoint redoes them instead of keeping them (or reusing them from the cache)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import query
from tests.llm.conftest import marker, run_step
from tests.llm.test_rewrite_verify import (  # noqa: F401 (verify_workspace is a fixture)
    JUDGE_SAYS,
    current,
    verify,
    verify_workspace,
)
from vlaa_data.status import build_status
from vlaa_data.steps.llm_runner import run_llm_step
from vlaa_data.steps.llm_step import LlmOptions
from vlaa_data.testing.server import Reply, ScriptedServer
from vlaa_data.workspace import Workspace


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLAA_TEST_KEY", "sk-vlaa-test-secret-7f3a9c")


def real_r1(request: dict, attempt: int) -> Reply:
    return Reply.ok("The answer is 7.", reasoning_content="A real model thinks: 7.")


@pytest.fixture
def real() -> Iterator[ScriptedServer]:
    """A server that passes for a real model: it does not say it is the stand-in."""
    with ScriptedServer(real_r1, identify=False) as running:
        yield running


def origins(root: Path, step: str) -> set[tuple[str, str, bool]]:
    rows = query(
        root, "SELECT backend, base_url, scripted FROM current_results WHERE step = ?", [step]
    )
    return set(rows)


def status(root: Path) -> dict:
    with Workspace.open(root, write=False) as ws:
        return build_status(ws.store).to_dict()


def test_each_result_records_its_endpoint_and_status_counts_the_scripted_ones(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(3)
    assert run_step(root, "distill", model="test-r1").outcomes == {"done": 3}
    assert origins(root, "distill") == {("openai", server.url, True)}
    # The caption step needed no call: no endpoint, nothing scripted.
    assert origins(root, "caption") == {(None, None, None)}
    assert query(root, "SELECT DISTINCT scripted FROM llm_calls") == [(True,)]
    report = status(root)
    assert report["scripted"] == {"distill": 3}
    assert report["endpoints"] == {"distill": {server.url: {"results": 3, "scripted": 3}}}


def test_a_real_endpoint_redoes_what_the_scripted_server_answered(
    llm_workspace, server: ScriptedServer, real: ScriptedServer
) -> None:
    root = llm_workspace(4)
    assert run_step(root, "distill", model="test-r1").outcomes == {"done": 4}
    # The same requests (same model id, same prompts) to a real endpoint: the stand-in's
    # results count as pending, and its cached replies are not reused.
    report = run_step(root, "distill", model="test-r1", base_url=real.url)
    assert report.selected == 4 and real.count == 4
    assert report.outcomes == {"done": 4}
    assert origins(root, "distill") == {("openai", real.url, False)}
    answers = query(
        root, "SELECT DISTINCT output->>'answer' FROM current_results WHERE step = 'distill'"
    )
    assert answers == [("The answer is 7.",)]
    assert status(root)["scripted"] == {}
    # Real after real resumes: nothing to redo, nothing sent.
    again = run_step(root, "distill", model="test-r1", base_url=real.url)
    assert again.selected == 0 and real.count == 4
    # Back on the stand-in, nothing is redone either: it does not replace real replies.
    assert run_step(root, "distill", model="test-r1").selected == 0
    assert server.count == 4


def test_a_scripted_run_after_a_scripted_run_resumes_even_on_another_port(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(3)
    assert run_step(root, "distill", model="test-r1").outcomes == {"done": 3}
    with ScriptedServer(server.responder) as other:
        report = run_step(root, "distill", model="test-r1", base_url=other.url)
        assert report.selected == 0 and other.count == 0
    assert status(root)["scripted"] == {"distill": 3}


def test_a_dry_run_prices_the_scripted_results_as_work_to_redo(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(3)
    run_step(root, "distill", model="test-r1")
    with Workspace.open(root, write=False) as ws:
        report = run_llm_step(ws, "distill", LlmOptions(model="test-r1", dry_run=True))
    assert report.selected == 3 and report.estimate is not None
    assert report.estimate.requests == 3 and report.estimate.cached == 0


def test_a_real_judge_redoes_the_verdicts_of_the_scripted_one(
    verify_workspace: Path,  # noqa: F811 (the fixture imported above)
    server: ScriptedServer,
) -> None:
    root = verify_workspace
    server.responder = lambda request, attempt: Reply.ok("No")
    assert verify(root, model="test-judge").sent_to_judge == 4
    assert status(root)["scripted"] == {"distill": 10, "verify": 4}
    # Again on the stand-in: nothing to do.
    assert verify(root, model="test-judge").selected == 0

    def judge(request: dict, attempt: int) -> Reply:
        return Reply.ok(JUDGE_SAYS[marker(request)])

    with ScriptedServer(judge, identify=False) as real:
        report = verify(root, model="test-judge", base_url=real.url)
        assert report.selected == 4 and report.sent_to_judge == 4 and real.count == 4
    results = current(root, "verify")
    assert results[6][0] == "done" and results[9][0] == "done"  # the real judge said Yes
    assert status(root)["scripted"] == {"distill": 10}
