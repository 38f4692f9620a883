"""caption and distill against a scripted OpenAI-compatible server over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import query
from tests.llm.conftest import marker, run_step
from vlaa_data.errors import SettingsError
from vlaa_data.testing.server import Reply, ScriptedServer


def current(root: Path, step: str) -> dict[str, tuple[str, dict, str | None]]:
    rows = query(
        root,
        "SELECT sample_id, status, output, reason FROM current_results WHERE step = ?",
        [step],
    )
    return {r[0]: (r[1], json.loads(r[2]), r[3]) for r in rows}


def result_counts(root: Path, step: str) -> dict[str, int]:
    rows = query(root, "SELECT sample_id, count(*) FROM results WHERE step = ? GROUP BY 1", [step])
    return dict(rows)


def test_distill_stores_reasoning_and_answer_apart_in_every_reply_format(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(3)

    def respond(request: dict, attempt: int) -> Reply:
        n = marker(request)
        if n == 0:  # DeepSeek's API: a separate field
            return Reply.ok("Answer: 0", reasoning_content="I count zero cubes.")
        if n == 1:  # self-hosted R1 with both tags
            return Reply.ok("<think>\nOne cube, wait, yes one.\n</think>\n\nAnswer: 1")
        return Reply.ok("Two cubes are visible.\n</think>\nAnswer: 2")  # lone closing tag

    server.responder = respond
    captions = query(root, "SELECT DISTINCT method, status FROM results WHERE step = 'caption'")
    assert captions == [("existing_caption", "done")] and server.count == 0
    report = run_step(root, "distill", model="test-r1", max_tokens=4096)
    assert report.outcomes == {"done": 3}
    results = current(root, "distill")
    assert results["toy/s000"][1] == {"reasoning": "I count zero cubes.", "answer": "Answer: 0"}
    assert results["toy/s001"][1] == {
        "reasoning": "One cube, wait, yes one.",
        "answer": "Answer: 1",
    }
    assert results["toy/s002"][1] == {"reasoning": "Two cubes are visible.", "answer": "Answer: 2"}
    prompt = server.requests[0]["messages"][0]["content"]
    assert "Q0 shows 0 cubes." in prompt and "Question: Q0: how many cubes?" in prompt
    assert len(server.requests[0]["messages"]) == 1  # one user turn, no system prompt (R1)
    assert server.requests[0]["model"] == "scripted-r1"
    assert server.requests[0]["max_tokens"] == 4096


def test_every_fault_ends_done_or_failed_with_a_reason(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(8)
    script = {
        0: [Reply.error(429, retry_after=0.3)],
        1: [Reply.error(500), Reply.error(503)],
        2: [Reply.ok("late", delay=2.0)],  # slower than the 0.5 s timeout
        3: [Reply.drop()],
        4: [Reply.malformed()] * 9,
        5: [Reply.ok("Six cubes, wait", finish_reason="length")],
        6: [Reply.error(500)] * 9,
        7: [Reply.error(400, message="bad image")] * 9,
    }

    def respond(request: dict, attempt: int) -> Reply:
        n = marker(request)
        faults = script[n]
        if attempt <= len(faults):
            return faults[attempt - 1]
        return Reply.ok(f"Answer: {n}", reasoning_content="ok")

    server.responder = respond
    report = run_step(root, "distill", model="test-r1")
    results = current(root, "distill")
    assert {k: (v[0], v[2]) for k, v in results.items()} == {
        "toy/s000": ("done", None),
        "toy/s001": ("done", None),
        "toy/s002": ("done", None),
        "toy/s003": ("done", None),
        "toy/s004": ("failed", "unparseable_response"),
        "toy/s005": ("truncated", "length"),
        "toy/s006": ("failed", "server_error"),
        "toy/s007": ("failed", "bad_request"),
    }
    assert (
        results["toy/s005"][1]["reasoning"] == ""
        and "Six cubes" in results["toy/s005"][1]["answer"]
    )
    assert "bad image" in results["toy/s007"][1]["error"]
    assert set(result_counts(root, "distill").values()) == {1}  # no duplicate result
    requests_per_sample = {}
    for body in server.requests:
        requests_per_sample[marker(body)] = requests_per_sample.get(marker(body), 0) + 1
    assert requests_per_sample[4] == 1  # a malformed reply may have been billed: not re-sent
    assert requests_per_sample[5] == 1  # truncated: not re-bought
    assert requests_per_sample[6] == 4  # the first attempt and three retries
    assert requests_per_sample[7] == 1  # a 400 is not retried
    assert report.progress.retries >= 6
    ledger = query(root, "SELECT status, count(*) FROM llm_calls GROUP BY 1 ORDER BY 1")
    assert ledger == [("ok", 5), ("unparseable", 1)]


def test_a_rerun_sends_nothing_and_retries_only_failures(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(5)
    flaky = {"down": True}

    def respond(request: dict, attempt: int) -> Reply:
        n = marker(request)
        if n == 4 and flaky["down"]:
            return Reply.error(500)
        if n == 3:
            return Reply.ok("cut", reasoning_content="long", finish_reason="length")
        return Reply.ok(f"Answer: {n}", reasoning_content="r")

    server.responder = respond
    first = run_step(root, "distill", model="test-r1")
    assert first.outcomes == {"done": 3, "truncated:length": 1, "failed:server_error": 1}
    sent = server.count
    flaky["down"] = False
    second = run_step(root, "distill", model="test-r1")
    # the failed sample is retried (one request); the truncated one is not re-bought
    assert second.selected == 1 and server.count == sent + 1
    assert current(root, "distill")["toy/s004"][0] == "done"
    third = run_step(root, "distill", model="test-r1")
    assert third.selected == 0 and server.count == sent + 1
    # --redo with unchanged prompts: every reply comes from the cache
    redo = run_step(root, "distill", model="test-r1", redo=True)
    assert redo.progress.cached == 5 and redo.progress.requests == 0
    assert server.count == sent + 1
    # --retry-truncated with the same budget: the cached reply says the same, nothing written
    again = run_step(root, "distill", model="test-r1", retry_truncated=True)
    assert again.outcomes == {"unchanged": 1} and server.count == sent + 1
    # a larger budget is a different request: it is sent
    bigger = run_step(root, "distill", model="test-r1", retry_truncated=True, max_tokens=99_999)
    assert bigger.progress.requests == 1
    # --no-cache pays again, and the ledger shows both payments
    run_step(root, "distill", model="test-r1", redo=True, no_cache=True, limit=2)
    paid_twice = query(
        root, "SELECT count(*) FROM (SELECT key FROM llm_calls GROUP BY key HAVING count(*) > 1)"
    )
    assert paid_twice == [(2,)]


def test_budget_stops_sending_and_leaves_the_rest_pending(
    llm_workspace, server: ScriptedServer
) -> None:
    # $1000 per million tokens: a request (about 300 tokens in, 20 out) costs about $0.3
    root = llm_workspace(30, price=1000.0)
    report = run_step(root, "distill", model="test-r1", budget_usd=2.0, concurrency=2)
    assert report.stopped == "budget"
    spent = query(root, "SELECT sum(cost_usd) FROM llm_calls")[0][0]
    assert 1.0 < spent <= 2.0
    assert 0 < server.count < 30
    assert report.left_pending == 30 - server.count
    done = current(root, "distill")
    assert len(done) == server.count  # the rest is pending: no result at all
    runs = query(root, "SELECT status FROM runs WHERE command LIKE '%distill%'")
    assert runs == [("stopped",)]


def test_dry_run_prices_without_sending_or_writing(llm_workspace, server: ScriptedServer) -> None:
    root = llm_workspace(4, caption=False)
    report = run_step(root, "caption", model="test-vlm", dry_run=True)
    assert server.count == 0
    assert report.estimate is not None and report.estimate.requests == 4
    assert report.estimate.tokens_in > 4 * 85  # text plus one image each
    assert report.estimate.cost_expected_usd > 0
    assert "Describe this image" in report.estimate.example_prompt
    assert query(root, "SELECT count(*) FROM results") == [(0,)]
    assert query(root, "SELECT count(*) FROM runs WHERE command LIKE '%caption%'") == [(0,)]


def test_caption_sends_the_image_once_per_image_and_skips_what_needs_no_call(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(3, caption=False)
    server.responder = lambda request, attempt: Reply.ok("A red square on white.")
    report = run_step(root, "caption", model="test-vlm", max_pixels=64)
    assert report.outcomes == {"done": 3}
    content = server.requests[0]["messages"][0]["content"]
    assert content[0]["type"] == "text" and "Describe this image" in content[0]["text"]
    assert content[1]["image_url"]["url"].startswith("data:image/")
    assert current(root, "caption")["toy/s000"][1] == {"caption": "A red square on white."}
    # distill builds on the caption, and its result points at it
    run_step(root, "distill", model="test-r1")
    lineage = query(
        root,
        "SELECT d.parent_id = c.id FROM current_results d JOIN current_results c "
        "ON c.sample_id = d.sample_id AND c.step = 'caption' WHERE d.step = 'distill'",
    )
    assert lineage == [(True,)] * 3


def test_a_vision_step_refuses_a_text_only_preset(llm_workspace) -> None:
    root = llm_workspace(1, caption=False)
    with pytest.raises(SettingsError, match="does not accept them"):
        run_step(root, "caption", model="test-r1")


def test_a_missing_key_fails_at_once_naming_the_variable(
    llm_workspace, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = llm_workspace(2)
    monkeypatch.delenv("VLAA_TEST_KEY")
    with pytest.raises(SettingsError, match="VLAA_TEST_KEY is not set"):
        run_step(root, "distill", model="test-r1")
    assert server.count == 0


def test_the_key_is_sent_but_never_stored(llm_workspace, server: ScriptedServer) -> None:
    root = llm_workspace(2)
    run_step(root, "distill", model="test-r1", command="vlaa-data distill --model test-r1")
    assert server.auth_headers == ["Bearer sk-vlaa-test-secret-7f3a9c"] * 2
    for path in root.rglob("*"):
        if path.is_file():
            assert b"sk-vlaa-test-secret" not in path.read_bytes(), path
    settings = json.loads(query(root, "SELECT settings FROM runs ORDER BY started_at DESC")[0][0])
    assert settings["api_key_env"] == "VLAA_TEST_KEY"
