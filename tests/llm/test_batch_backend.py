"""``--backend batch``: OpenAI's Batch API against the scripted server, over real HTTP, in real
workspaces: jobs gathered from the queue, replies in the cache and ledger at half price, failed
lines and ended batches recorded with their reason and retried, and a killed run resumed
without a second batch."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import query
from tests.llm.conftest import marker, r1_reply, run_step
from tests.llm.test_cli_llm import start_distill
from vlaa_data.errors import VlaaError
from vlaa_data.evaluation import GenerationSettings
from vlaa_data.evaluation.generate import check_backend
from vlaa_data.llm.batch import BatchBackend, BatchConfig
from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest
from vlaa_data.rewards.open_scorers import JudgeScorer
from vlaa_data.testing.server import Reply, ScriptedServer


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch jobs polled every 20 ms, here and in the CLI subprocesses."""
    monkeypatch.setenv("VLAA_LLM_BATCH_POLL_S", "0.02")


def jobs(root: Path) -> list[dict]:
    path = root / "batches.json"
    return json.loads(path.read_text(encoding="utf-8"))["jobs"] if path.exists() else []


def distill_states(root: Path) -> dict[str, tuple[str, str | None]]:
    rows = query(
        root,
        "SELECT sample_id, status, reason FROM current_results WHERE step = 'distill'",
    )
    return {sample: (status, reason) for sample, status, reason in rows}


def all_done(n: int) -> dict[str, tuple[str, None]]:
    return {f"toy/s{i:03d}": ("done", None) for i in range(n)}


def ledger_cost(root: Path, backend: str) -> float:
    rows = query(root, "SELECT sum(cost_usd) FROM llm_calls WHERE backend = ?", [backend])
    return rows[0][0]


def lines_of(server: ScriptedServer, creation: int) -> int:
    """How many requests the ``creation``-th batch created on ``server`` holds."""
    file_id = server.batch_creations[creation]["input_file_id"]
    return len(server.files[file_id].splitlines())


def test_distill_through_the_cli_sends_one_batch_and_a_rerun_sends_nothing(
    llm_workspace, cli, server: ScriptedServer
) -> None:
    n = 70  # more than the default --concurrency: a batch is not cut at the window
    root = llm_workspace(n)

    result = cli("distill", "-w", root, "--model", "test-r1", "--backend", "batch", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcomes"] == {"done": n} and report["requests"] == n
    assert server.count == 0 and server.batch_count == 1 and lines_of(server, 0) == n
    creation = server.batch_creations[0]
    assert (creation["endpoint"], creation["completion_window"]) == ("/v1/chat/completions", "24h")
    assert sorted(marker(body) for body in server.batch_requests) == list(range(n))
    assert distill_states(root) == all_done(n)
    assert query(root, "SELECT DISTINCT backend FROM llm_calls") == [("batch",)]
    assert jobs(root) == []  # every reply handed out: the job is forgotten

    rerun = cli(
        "distill", "-w", root, "--model", "test-r1", "--backend", "batch", "--redo", "--json"
    )

    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["outcomes"] == {"done:cached": n}
    assert server.count == 0 and server.batch_count == 1
    assert query(root, "SELECT count(*) FROM llm_calls") == [(n,)]


def test_batch_replies_cost_half_of_the_same_requests_sent_at_once(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(4)
    at_once = run_step(root, "distill", model="test-r1", dry_run=True)
    batched = run_step(root, "distill", model="test-r1", backend="batch", dry_run=True)
    assert at_once.estimate is not None and batched.estimate is not None
    assert batched.estimate.cost_expected_usd == pytest.approx(
        at_once.estimate.cost_expected_usd / 2
    )

    report = run_step(root, "distill", model="test-r1", backend="batch")
    # The same requests again, sent one by one.
    run_step(root, "distill", model="test-r1", redo=True, no_cache=True)

    assert report.progress.cost_usd == pytest.approx(ledger_cost(root, "batch"))
    assert server.batch_count == 1 and server.count == 4
    assert ledger_cost(root, "batch") > 0
    assert ledger_cost(root, "batch") == pytest.approx(ledger_cost(root, "openai") / 2)


def test_the_budget_counts_batch_prices(llm_workspace, server: ScriptedServer) -> None:
    root = llm_workspace(1)
    estimate = run_step(root, "distill", model="test-r1", dry_run=True).estimate
    assert estimate is not None
    budget = 0.75 * estimate.cost_expected_usd  # the request at full price does not fit

    at_once = run_step(root, "distill", model="test-r1", budget_usd=budget)
    batched = run_step(root, "distill", model="test-r1", backend="batch", budget_usd=budget)

    assert at_once.stopped == "budget" and server.count == 0
    assert batched.stopped is None and batched.outcomes == {"done": 1}
    assert server.batch_count == 1


def test_batch_size_splits_the_queue_into_jobs(llm_workspace, server: ScriptedServer) -> None:
    root = llm_workspace(7)

    report = run_step(root, "distill", model="test-r1", backend="batch", batch_size=3)

    assert report.outcomes == {"done": 7}
    assert sorted(lines_of(server, i) for i in range(server.batch_count)) == [1, 3, 3]
    settings = query(root, "SELECT settings FROM runs WHERE command LIKE '%distill%'")
    assert json.loads(settings[-1][0])["concurrency"] == 64  # 4 batches of 3 fit in 64
    big = run_step(root, "distill", model="test-r1", backend="batch", batch_size=100, redo=True)
    assert big.outcomes == {"done:cached": 7}
    settings = query(root, "SELECT settings FROM runs WHERE command LIKE '%distill%'")
    assert json.loads(settings[-1][0])["concurrency"] == 400  # 4 whole batches in flight


def test_a_failed_line_fails_its_sample_and_a_rerun_retries_it(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(4)

    def refuse_q1(request: dict, attempt: int) -> Reply:
        if marker(request) == 1:
            return Reply.error(400, message="image too large for the scripted model")
        return r1_reply(request, attempt)

    server.responder = refuse_q1
    report = run_step(root, "distill", model="test-r1", backend="batch")

    assert report.outcomes == {"done": 3, "failed:bad_request": 1}
    states = distill_states(root)
    assert states.pop("toy/s001") == ("failed", "bad_request")
    output = query(
        root,
        "SELECT output FROM current_results WHERE sample_id = 'toy/s001' AND step = 'distill'",
    )
    assert "image too large for the scripted model" in output[0][0]
    assert query(root, "SELECT count(*) FROM llm_calls") == [(3,)]  # the error is not billed

    server.responder = r1_reply
    again = run_step(root, "distill", model="test-r1", backend="batch")

    assert again.outcomes == {"done": 1}
    assert server.batch_count == 2 and lines_of(server, 1) == 1
    assert distill_states(root) == all_done(4)


@pytest.mark.parametrize(
    ("outcome", "reason", "says"),
    [
        ("expired", "batch_expired", "before the completion window expired"),
        ("failed", "batch_failed", "token_limit_exceeded: Enqueued token limit reached"),
        ("cancelled", "batch_cancelled", "because the batch was cancelled"),
    ],
)
def test_a_batch_that_ends_unanswered_fails_its_samples_and_a_later_run_retries_them(
    llm_workspace, server: ScriptedServer, outcome: str, reason: str, says: str
) -> None:
    root = llm_workspace(3)
    server.batch_outcome = outcome

    report = run_step(root, "distill", model="test-r1", backend="batch")

    assert report.outcomes == {f"failed:{reason}": 3}
    assert set(distill_states(root).values()) == {("failed", reason)}
    assert report.first_failure is not None and says in report.first_failure
    assert report.first_failure.startswith("batch batch_scripted_")  # which batch
    assert jobs(root) == []  # an ended job answers nothing more

    server.batch_outcome = "completed"
    again = run_step(root, "distill", model="test-r1", backend="batch")

    assert again.outcomes == {"done": 3} and server.batch_count == 2
    assert distill_states(root) == all_done(3)


def test_a_killed_run_is_resumed_without_a_second_batch(
    llm_workspace, server: ScriptedServer
) -> None:
    n = 6
    root = llm_workspace(n)
    server.batch_polls = 10**9  # in progress until the test says otherwise
    process = start_distill(root, "--backend", "batch")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        server.batch_count == 1 and [j["status"] for j in jobs(root)] == ["in_progress"]
    ):
        time.sleep(0.05)
    process.kill()  # SIGKILL: no cleanup at all
    process.wait(timeout=10)
    recorded = jobs(root)
    assert server.batch_count == 1 and len(recorded) == 1
    submitted = server.files[server.batch_creations[0]["input_file_id"]].splitlines()
    assert recorded[0]["custom_ids"] == [json.loads(line)["custom_id"] for line in submitted]
    assert len(submitted) == n
    assert distill_states(root) == {}

    server.batch_polls = 0
    rerun = start_distill(root, "--backend", "batch")
    _, stderr = rerun.communicate(timeout=60)

    assert rerun.returncode == 0, stderr
    assert server.batch_count == 1 and len(server.batch_requests) == n
    assert distill_states(root) == all_done(n)
    assert query(root, "SELECT count(*), count(DISTINCT key) FROM llm_calls") == [(n, n)]
    assert jobs(root) == []


def _requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(model="scripted-r1", messages=[{"role": "user", "content": f"Q{i}: hi"}])
        for i in range(n)
    ]


def _complete_all(config: BatchConfig, requests: list[ChatRequest]) -> list[ChatReply]:
    async def go() -> list[ChatReply]:
        backend = BatchBackend(config)
        try:
            return await asyncio.gather(*(backend.complete(r) for r in requests))
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("created", [True, False])
def test_a_job_left_submitting_is_found_by_its_file_or_submitted_again(
    tmp_path: Path, server: ScriptedServer, created: bool
) -> None:
    """A process that died while creating a batch left its job ``submitting``, without an id:
    the next backend finds the batch by its input file, or, if it was never made, sends it."""
    requests = _requests(3)
    state = tmp_path / "batches.json"
    config = BatchConfig(server.url, "sk-test", poll_s=0.02, idle_s=0.01, state_path=state)
    lines = [
        {
            "custom_id": r.key(),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": r.model, "messages": r.messages},
        }
        for r in requests
    ]
    client = openai.OpenAI(base_url=server.url, api_key="sk-test")
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    upload = client.files.create(file=("requests.jsonl", data), purpose="batch")
    if created:
        client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    job = {
        "id": None,
        "input_file_id": upload.id,
        "base_url": server.url,
        "model": "scripted-r1",
        "created": time.time(),
        "status": "submitting",
        "custom_ids": [r.key() for r in requests],
    }
    state.write_text(json.dumps({"jobs": [job]}), encoding="utf-8")

    replies = _complete_all(config, requests)

    assert [reply.content for reply in replies] == [f"The answer is {i}." for i in range(3)]
    assert server.batch_count == 1
    assert (server.batch_creations[0]["input_file_id"] == upload.id) is created
    assert json.loads(state.read_text(encoding="utf-8")) == {"jobs": []}


def test_eval_and_the_judge_refuse_the_batch_backend_in_one_line() -> None:
    settings = GenerationSettings(backend="batch", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(VlaaError, match=r"^the batch backend answers within hours[^\n]*$"):
        check_backend(settings)
    with pytest.raises(VlaaError, match=r"^the batch backend answers within hours.*judge"):
        JudgeScorer.from_preset("gpt-4o", backend="batch")


def test_the_scripted_server_speaks_the_batch_api(server: ScriptedServer) -> None:
    client = openai.OpenAI(base_url=server.url, api_key="sk-test")
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "scripted-r1", "messages": [{"role": "user", "content": "Q4: hi"}]},
    }
    upload = client.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    assert client.files.retrieve(upload.id).purpose == "batch"
    server.batch_polls = 1
    kept = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    dropped = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert client.batches.cancel(dropped.id).status == "cancelling"
    assert client.batches.retrieve(dropped.id).status == "cancelled"
    assert client.batches.retrieve(kept.id).status == "in_progress"
    done = client.batches.retrieve(kept.id)

    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (1, 1)
    assert done.output_file_id is not None and done.error_file_id is None
    output = json.loads(client.files.content(done.output_file_id).text)
    assert output["custom_id"] == "a" and output["response"]["status_code"] == 200
    assert output["response"]["body"]["choices"][0]["message"]["content"] == "The answer is 4."
    cancelled = client.batches.retrieve(dropped.id)
    assert cancelled.error_file_id is not None and cancelled.output_file_id is None
    error = json.loads(client.files.content(cancelled.error_file_id).text)["error"]
    assert error["code"] == "batch_cancelled"
    assert [batch.id for batch in client.batches.list(limit=1)] == [dropped.id, kept.id]
    assert server.batch_count == 2 and server.count == 0
    assert server.batch_requests == [line["body"]]
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
