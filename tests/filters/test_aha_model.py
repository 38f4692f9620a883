"""``filter aha --method model``: a scripted judge over real HTTP rules on each keyword hit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliRun, query
from tests.filters.conftest import import_texts
from tests.llm.conftest import add_presets, closed_url, fast_settings
from tests.release.conftest import build_verified_workspace
from vlaa_data.filters.aha import AhaOptions, find_hits
from vlaa_data.filters.aha_model import MAX_HITS, AhaModelOptions, AhaModelReport, run_aha_model
from vlaa_data.steps.aha_judge import read_verdicts
from vlaa_data.steps.llm_step import LlmOptions
from vlaa_data.testing.server import Reply, ScriptedServer
from vlaa_data.workspace import Workspace

T0, T1, T2 = (f"texts/clevr_math-t{i}" for i in range(3))
_HIT_LINE = re.compile(r"^(\d+)\. .*?\[\[(.+?)\]\]", re.MULTILINE)


class Judge:
    """Answers each listed hit by its keyword; ``replies`` overrides the reply of a request
    that contains the key."""

    def __init__(self) -> None:
        self.verdicts = {"wait": "genuine"}  # any other keyword: filler
        self.replies: dict[str, Reply] = {}

    def __call__(self, request: dict, attempt: int) -> Reply:
        prompt = request["messages"][0]["content"]
        for key, reply in self.replies.items():
            if key in prompt:
                return reply
        lines = [
            f"{n}: {self.verdicts.get(keyword.lower(), 'filler')}"
            for n, keyword in _HIT_LINE.findall(prompt)
        ]
        return Reply.ok("\n".join(lines))


@pytest.fixture
def judge() -> Judge:
    return Judge()


@pytest.fixture
def server(judge: Judge) -> Iterator[ScriptedServer]:
    with ScriptedServer(judge) as running:
        yield running


def _with_presets(root: Path, server: ScriptedServer) -> Path:
    add_presets(root, server)  # test-vlm: no API key needed
    fast_settings(root)
    return root


@pytest.fixture
def judged_workspace(workspace: Path, tmp_path: Path, server: ScriptedServer) -> Path:
    """Six texts: t1 hits wait, check and again; t2 hmm and again; the others nothing."""
    import_texts(workspace, tmp_path)
    return _with_presets(workspace, server)


def _run(
    root: Path, *, dry_run: bool = False, redo: bool = False, limit: int | None = None
) -> AhaModelReport:
    judge = LlmOptions(model="test-vlm", dry_run=dry_run, redo=redo, limit=limit)
    with Workspace.open(root, write=not dry_run) as ws:
        return run_aha_model(ws, AhaModelOptions(AhaOptions(), judge))


def _scores(root: Path) -> dict[str, tuple[float | None, dict]]:
    rows = query(root, "SELECT sample_id, value, detail FROM scores WHERE name = 'aha_model'")
    return {sample: (value, json.loads(detail)) for sample, value, detail in rows}


def _set_reasoning(root: Path, sample_id: str, reasoning: str) -> None:
    """A new rewrite of ``sample_id``'s text, as the rewrite step would record it."""
    with Workspace.open(root, write=True) as ws:
        (distill,) = ws.store.query(
            "SELECT id FROM results WHERE sample_id = ? AND step = 'distill'", [sample_id]
        ).rows[0]
        row = {
            "id": ws.store.allocate_result_ids(1)[0],
            "sample_id": sample_id,
            "step": "rewrite",
            "attempt": 2,
            "status": "done",
            "output": json.dumps({"reasoning": reasoning, "answer": "Answer: 3"}),
            "reason": None,
            "method": "test",
            "model": None,
            "prompt_hash": None,
            "run_id": "test",
            "parent_id": distill,
        }
        ws.store.write_llm_batch(results=[row], calls=[])


def test_hits_merge_nested_keywords_and_keep_offsets() -> None:
    text = "Let me Double-Check. Wait, checkered? WAIT."
    hits = find_hits(text, ["wait", "double-check", "check"], "substring")
    assert [(h.keyword, text[h.offset : h.end]) for h in hits] == [
        ("double-check", "Double-Check"),  # "check" inside it is the same place
        ("wait", "Wait"),
        ("check", "check"),
        ("wait", "WAIT"),
    ]
    # whole words: "Check" after a hyphen is one, "checkered" is not
    words = find_hits(text, ["wait", "check"], "word")
    assert [h.keyword for h in words] == ["check", "wait", "wait"]


@pytest.mark.parametrize(
    ("reply", "verdicts"),
    [
        ("1: genuine\n2: filler\n3: Filler", ["genuine", "filler", "filler"]),
        ("**1.** Genuine\n- 2) filler\nHit 3 - genuine", ["genuine", "filler", "genuine"]),
        ("1: genuine\n2: maybe\n", ["genuine", "unclear", "unclear"]),  # 3 is missing
        ("1: genuine\n1: filler\n2: not genuine\n3: filler", ["unclear", "unclear", "filler"]),
        ("4: genuine\nAll three are filler.", ["unclear", "unclear", "unclear"]),
    ],
)
def test_reading_the_reply_never_guesses(reply: str, verdicts: list[str]) -> None:
    assert read_verdicts(reply, 3) == verdicts


def test_one_request_per_sample_with_hits_and_scores_per_hit(
    judged_workspace: Path, server: ScriptedServer
) -> None:
    report = _run(judged_workspace)
    assert server.count == 2  # t1 and t2; four samples without hits cost nothing
    prompts = {
        marker: r["messages"][0]["content"]
        for r in server.requests
        for marker in ("Question 1", "Question 2")
        if marker in r["messages"][0]["content"]
    }
    context = "three red cubes and two spheres. [[Wait]], check again: three cubes."
    assert context in prompts["Question 1"]
    assert re.search(r"^1\. .*\[\[Wait\]\]", prompts["Question 1"], re.M)
    assert re.search(r"^2\. .*\[\[check\]\]", prompts["Question 1"], re.M)
    assert re.search(r"^3\. .*\[\[again\]\]", prompts["Question 1"], re.M)
    assert "exactly 2 lines" in prompts["Question 2"]

    scores = _scores(judged_workspace)
    assert len(scores) == 6
    value, detail = scores[T1]
    assert value == 1
    assert [(h["keyword"], h["verdict"]) for h in detail["hits"]] == [
        ("wait", "genuine"),
        ("check", "filler"),
        ("again", "filler"),
    ]
    assert detail["hits"][0]["offset"] == len("There are three red cubes and two spheres. ")
    assert detail["model"] == "scripted-vlm" and detail["preset"] == "test-vlm"
    assert len(detail["prompt_sha"]) == 16 and detail["state"] == "judged"
    assert scores[T2][0] == 0
    assert scores[T0] == (0, {"match": "substring", "scope": "all", "state": "no_hits"})
    assert (report.judged, report.with_genuine, report.sent) == (2, 1, 2)
    assert dict(report.hits) == {"genuine": 1, "filler": 4, "unclear": 0, "not_judged": 0}
    view = dict(query(judged_workspace, "SELECT id, aha_model_count FROM samples_view"))
    assert view[T1] == 1 and view[T2] == 0
    # the judgement is a result whose parent is the text it judged
    assert query(
        judged_workspace,
        "SELECT r.parent_id = v.text_result_id FROM results r JOIN samples_view v "
        "ON v.id = r.sample_id WHERE r.step = 'aha'",
    ) == [(True,), (True,)]


def test_unclear_lines_and_unreadable_replies(
    judged_workspace: Path, server: ScriptedServer, judge: Judge
) -> None:
    judge.replies = {
        "Question 1": Reply.ok("1: genuine\n2: perhaps"),  # hit 2 unreadable, hit 3 missing
        "Question 2": Reply.ok("Both are clearly filler."),
    }
    report = _run(judged_workspace)
    scores = _scores(judged_workspace)
    assert scores[T1][0] == 1
    assert [h["verdict"] for h in scores[T1][1]["hits"]] == ["genuine", "unclear", "unclear"]
    value, detail = scores[T2]
    assert value is None and detail["state"] == "unclear"  # NULL: nothing could be read
    assert [h["verdict"] for h in detail["hits"]] == ["unclear", "unclear"]
    assert report.unscored == {"unclear": 1} and report.hits["unclear"] == 4
    assert query(
        judged_workspace,
        "SELECT status, reason FROM results WHERE step = 'aha' AND sample_id = ?",
        [T2],
    ) == [("rejected", "unclear")]


def test_a_failed_call_scores_null_and_is_retried(
    judged_workspace: Path, server: ScriptedServer, judge: Judge
) -> None:
    judge.replies = {"Question 2": Reply.error(400, message="bad request")}
    report = _run(judged_workspace)
    assert _scores(judged_workspace)[T2] == (
        None,
        {"match": "substring", "scope": "all", "state": "failed"},
    )
    assert report.unscored == {"failed": 1}
    judge.replies = {}
    server.reset()
    report = _run(judged_workspace)
    assert server.count == 1 and report.sent == 1  # only the failed one; t1's judgement stands
    assert _scores(judged_workspace)[T2][0] == 0


def test_rerun_pays_nothing(judged_workspace: Path, server: ScriptedServer) -> None:
    _run(judged_workspace)
    before = _scores(judged_workspace)
    server.reset()
    report = _run(judged_workspace)
    assert server.count == 0 and report.sent == 0 and report.judge is None
    assert report.judged == 2
    # --redo asks again, and the cache answers
    report = _run(judged_workspace, redo=True)
    assert server.count == 0 and report.sent == 2
    assert report.judge is not None and report.judge.progress.cached == 2
    assert report.judge.progress.cost_usd == 0
    after = _scores(judged_workspace)
    assert {s: v for s, (v, _) in after.items()} == {s: v for s, (v, _) in before.items()}


def test_a_new_text_makes_the_score_stale(judged_workspace: Path, server: ScriptedServer) -> None:
    _run(judged_workspace)
    _set_reasoning(judged_workspace, T1, "Hmm, three cubes. I made a mistake: four cubes.")
    view = dict(query(judged_workspace, "SELECT id, aha_model_count FROM samples_view"))
    assert view[T1] is None and view[T2] == 0
    server.reset()
    report = _run(judged_workspace)
    assert server.count == 1 and report.sent == 1  # t1's new text; t2's judgement stands
    assert "[[Hmm]]" in server.requests[0]["messages"][0]["content"]
    value, detail = _scores(judged_workspace)[T1]
    assert value == 0 and [h["keyword"] for h in detail["hits"]] == ["hmm", "mistake"]


def test_hits_past_the_cap_are_not_judged(judged_workspace: Path, server: ScriptedServer) -> None:
    _set_reasoning(judged_workspace, T1, " ".join(["Wait."] * (MAX_HITS + 3)))
    report = _run(judged_workspace)
    value, detail = _scores(judged_workspace)[T1]
    assert value == MAX_HITS and len(detail["hits"]) == MAX_HITS and detail["not_judged"] == 3
    assert report.hits["not_judged"] == 3
    prompt = next(r["messages"][0]["content"] for r in server.requests if "Question 1" in str(r))
    assert f"\n{MAX_HITS}. " in prompt and f"\n{MAX_HITS + 1}. " not in prompt


def test_dry_run_sends_and_writes_nothing(judged_workspace: Path, server: ScriptedServer) -> None:
    report = _run(judged_workspace, dry_run=True)
    assert server.count == 0
    assert report.judge is not None and report.judge.estimate is not None
    assert report.judge.estimate.requests == 2
    assert "[[Wait]]" in report.judge.estimate.example_prompt
    assert query(judged_workspace, "SELECT count(*) FROM scores") == [(0,)]
    assert query(judged_workspace, "SELECT count(*) FROM results WHERE step = 'aha'") == [(0,)]


def test_limit_leaves_the_rest_null(judged_workspace: Path, server: ScriptedServer) -> None:
    report = _run(judged_workspace, limit=1)
    assert server.count == 1 and report.unscored == {"pending": 1}
    assert [v for v, _ in _scores(judged_workspace).values()].count(None) == 1


def test_cli_end_to_end(judged_workspace: Path, server: ScriptedServer, cli: CliRun) -> None:
    root = str(judged_workspace)
    result = cli("filter", "aha", "--method", "model", "-m", "test-vlm", "--dry-run", "-w", root)
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stdout and "requests to send" in result.stdout
    assert server.count == 0

    result = cli("filter", "aha", "--method", "model", "-m", "test-vlm", "-w", root)
    assert result.returncode == 0, result.stderr
    assert "6 samples scored, 2 with keyword hits, 2 judged" in result.stdout
    assert "hits: 1 genuine, 4 filler, 0 unclear" in result.stdout
    assert "2 requests, 0 from cache" in result.stdout

    result = cli("filter", "aha", "--method", "model", "-m", "test-vlm", "--json", "-w", root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sent"] == 0 and report["judged"] == 2 and report["judge"] is None
    assert server.count == 2

    result = cli("filter", "aha", "--model", "test-vlm", "-w", root)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --model: only with --method model"
    result = cli("filter", "aha", "--method", "guess", "-w", root)
    assert result.returncode == 1 and "unknown method 'guess'" in result.stderr


def test_an_unreachable_judge_stops_before_sending_and_leaves_the_scores_null(
    judged_workspace: Path, server: ScriptedServer, cli: CliRun
) -> None:
    url = closed_url()
    args = ("filter", "aha", "--method", "model", "-m", "test-vlm", "--base-url", url)
    result = cli(*args, "-w", judged_workspace)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: endpoint {url}: unreachable: ")
    assert line.endswith("2 samples left pending: run again once it answers")
    assert server.count == 0
    states = {sample: detail["state"] for sample, (_, detail) in _scores(judged_workspace).items()}
    assert states[T1] == states[T2] == "pending"
    assert _run(judged_workspace).judged == 2  # the judge answers again: all is judged


def test_split_with_the_model_score(
    workspace: Path, tmp_path: Path, server: ScriptedServer, judge: Judge, cli: CliRun
) -> None:
    build_verified_workspace(workspace, tmp_path)
    _with_presets(workspace, server)
    root = str(workspace)
    assert cli("filter", "aha", "-w", root).returncode == 0
    result = cli("split", "--name", "m", "--aha-score", "aha_model", "-w", root)
    assert result.returncode == 1
    assert "have no aha_model score" in result.stderr and "--method model" in result.stderr

    # clevr/c2 says "Wait, count again": both filler, so only the keyword score sends it to RL
    judge.verdicts = {"check": "genuine", "alternatively": "genuine"}
    result = cli("filter", "aha", "--method", "model", "-m", "test-vlm", "-w", root)
    assert result.returncode == 0, result.stderr
    for name, score in (("k", "aha"), ("m", "aha_model")):
        result = cli("split", "--name", name, "--aha-score", score, "-w", root)
        assert result.returncode == 0, result.stderr
    places = {
        (release, sample): (split, why)
        for release, sample, split, why in query(
            workspace, "SELECT release, sample_id, split, why FROM release_samples"
        )
    }
    assert places[("k", "clevr/c2")] == ("rl", "aha")
    assert places[("m", "clevr/c2")] == ("sft", "no_aha")
    assert places[("k", "clevr/c6")][0] == "rl" and places[("m", "clevr/c6")][0] == "sft"
    assert places[("m", "clevr/c4")] == ("rl", "aha") and places[("m", "arxiv/a2")][0] == "rl"
    (params,) = query(workspace, "SELECT params FROM releases WHERE name = 'm'")[0]
    assert json.loads(params)["aha_score"] == "aha_model"
