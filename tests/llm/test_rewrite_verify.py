"""rewrite and verify against the scripted server: which samples cost a call, what is rejected
and why, and every verdict with its method and extracted answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import png_bytes, query, write_jsonl
from tests.llm.conftest import add_presets, closed_url, fast_settings, marker, run_step
from vlaa_data.errors import SettingsError
from vlaa_data.sources import SourceOptions, open_source
from vlaa_data.steps.collect import collect
from vlaa_data.steps.llm_step import LlmOptions
from vlaa_data.steps.verify import VerifyOptions, VerifyReport, run_verify
from vlaa_data.testing.server import Reply, ScriptedServer
from vlaa_data.workspace import Workspace, init_workspace

JUDGE_PRESET = """
[presets.test-judge]
base_url = "{url}"
model = "scripted-judge"
"""


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLAA_TEST_KEY", "sk-vlaa-test-secret-7f3a9c")


def build(tmp_path: Path, server: ScriptedServer, rows: list[dict], distilled: dict) -> Path:
    """A workspace whose samples Q0..Qn-1 are captioned and distilled: ``distilled[n]`` is
    the (reasoning, answer) the scripted R1 gives for sample n."""
    root = init_workspace(tmp_path / "ws")
    images = tmp_path / "images"
    images.mkdir()
    for i, row in enumerate(rows):
        (images / f"{i}.png").write_bytes(png_bytes((i, 2 * i, 50), size=(100, 50)))
        row.update(id=f"s{i:02d}", image=f"{i}.png", caption=f"Q{i} caption.")
        row["question"] = f"Q{i}: {row['question']}"
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    source = open_source(
        str(data), None, SourceOptions(images=images, mapping={"context.caption": "caption"})
    )
    with Workspace.open(root, write=True) as ws:
        ws.settings.collect.workers = 1
        collect(ws, source, name="toy")
    add_presets(root, server)
    with (root / "vlaa.toml").open("a", encoding="utf-8") as toml:
        toml.write(JUDGE_PRESET.format(url=server.url))
    fast_settings(root)
    run_step(root, "caption", model="test-vlm")

    def distill(request: dict, attempt: int) -> Reply:
        reasoning, answer = distilled[marker(request)]
        return Reply.ok(answer, reasoning_content=reasoning)

    server.responder = distill
    assert run_step(root, "distill", model="test-r1").outcomes == {"done": len(rows)}
    server.reset()
    return root


def current(root: Path, step: str) -> dict[int, tuple[str, dict, str | None, str | None]]:
    rows = query(
        root,
        "SELECT sample_id, status, output, reason, method FROM current_results WHERE step = ?",
        [step],
    )
    return {int(r[0][-2:]): (r[1], json.loads(r[2]), r[3], r[4]) for r in rows}


def rewrite_text(request: dict) -> str:
    """The text a rewrite request asks to rewrite (everything after the instructions)."""
    prompt = request["messages"][0]["content"]
    return prompt.split("nothing before or after it.\n\n", 1)[1].rstrip("\n")


REASONING_0 = "The caption says there are 3 cubes.\nI count them: one, two, three.\n\nSo 3."


def test_rewrite_calls_only_where_a_caption_is_mentioned_and_keeps_line_breaks(
    tmp_path: Path, server: ScriptedServer
) -> None:
    rows = [{"question": "How many cubes?", "answer": "3"} for _ in range(4)]
    root = build(
        tmp_path,
        server,
        rows,
        {
            0: (REASONING_0, "Answer: 3"),
            1: ("Counting.\nThree.", "From the description, the answer is 3."),
            2: ("I see three cubes.\nYes.", "Answer: 3"),
            3: ("The text on the sign reads 3.", "Answer: 3"),  # text seen, not given
        },
    )
    sent: list[str] = []

    def respond(request: dict, attempt: int) -> Reply:
        text = rewrite_text(request)
        sent.append(text)
        edited = text.replace("The caption says there are", "The image shows")
        return Reply.ok(edited.replace("From the description,", "From the image,"))

    server.responder = respond
    report = run_step(root, "rewrite", model="test-vlm")
    assert server.count == 2
    assert report.outcomes == {"done": 2, "skipped:unchanged": 2}
    assert sent[0] == f"<think>\n{REASONING_0}\n</think>\nAnswer: 3"  # line breaks as stored
    results = current(root, "rewrite")
    status, output, _, method = results[0]
    assert (status, method) == ("done", "request")
    assert output["reasoning"] == REASONING_0.replace(
        "The caption says there are", "The image shows"
    )
    assert output["reasoning"].count("\n") == 3 and output["words_changed"] == 4
    assert results[1][1]["answer"] == "From the image, the answer is 3."
    assert results[1][1]["words_changed"] == 1
    for n in (2, 3):
        assert results[n][0] == "done" and results[n][3] == "unchanged"
        assert results[n][1]["answer"] == "Answer: 3" and "reasoning" in results[n][1]
    assert run_step(root, "rewrite", model="test-vlm").selected == 0  # nothing left to do


def test_rewrite_checks_its_endpoint_first_and_skips_what_needs_no_call(
    tmp_path: Path, server: ScriptedServer, cli
) -> None:
    rows = [{"question": "How many cubes?", "answer": "3"} for _ in range(2)]
    root = build(
        tmp_path, server, rows, {0: (REASONING_0, "Answer: 3"), 1: ("Three.", "Answer: 3")}
    )
    url = closed_url()
    result = cli("rewrite", "-w", root, "--model", "test-vlm", "--base-url", url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: endpoint {url}: unreachable: ")
    assert result.stderr.rstrip().endswith("1 samples left pending: run again once it answers")
    assert server.count == 0
    assert {n: r[0] for n, r in current(root, "rewrite").items()} == {1: "done"}  # unchanged


def test_rewrite_rejects_too_many_changes_with_the_number_and_lost_structure(
    tmp_path: Path, server: ScriptedServer
) -> None:
    rows = [{"question": "How many cubes?", "answer": "3"} for _ in range(3)]
    mention = "As the caption describes, three cubes.\nThey are red.\nSo three for Q{}."
    distilled = {n: (mention.format(n), "Answer: 3") for n in range(3)}
    root = build(tmp_path, server, rows, distilled)
    wordy = "Looking closely, I can see " + " ".join(f"w{i}" for i in range(12))  # 17 words

    def respond(request: dict, attempt: int) -> Reply:
        text, n = rewrite_text(request), marker(request)
        if n == 0:  # a rewrite that rewrites far too much
            return Reply.ok(text.replace("As the caption describes,", wordy))
        if n == 1:  # the line breaks collapsed
            return Reply.ok(
                text.replace("As the caption describes,", "In the image,").replace(
                    "cubes.\nThey", "cubes. They"
                )
            )
        return Reply.ok("In the image, three cubes for Q2. Answer: 3")  # the tags dropped

    server.responder = respond
    report = run_step(root, "rewrite", model="test-vlm")
    assert report.outcomes == {
        "rejected:too_many_words_changed": 1,
        "rejected:line_breaks_changed": 1,
        "rejected:think_tag_lost": 1,
    }
    results = current(root, "rewrite")
    assert results[0][1]["words_changed"] == 17 and results[0][1]["max_word_diff"] == 15
    assert wordy in results[0][1]["rewrite"]  # the rejected text is kept for inspection
    assert results[1][1]["words_changed"] == 3  # As/In, and "caption describes," for "image,"
    # A looser limit takes the same reply from the cache: nothing is paid again.
    report = run_step(root, "rewrite", model="test-vlm", redo=True, max_word_diff=30)
    assert server.count == 3 and report.progress.cached == 3
    assert current(root, "rewrite")[0][0] == "done"


VERIFY_ROWS = [
    ({"question": "How many cubes?", "answer": "3"}, "Answer: 3"),
    ({"question": "How many cubes?", "answer": "4"}, "Answer: 5"),
    ({"question": "Which? A. x B. y", "answer": "B", "reward_type": "choice"}, "So (B)."),
    ({"question": "Which? A. x C. z", "answer": "C", "reward_type": "choice"}, "Answer: A"),
    ({"question": "Half of one?", "answer": "\\frac{1}{2}", "reward_type": "math"}, "$0.5$"),
    (
        {"question": "Where is the cube?", "answer": "[10, 5, 50, 25]", "reward_type": "iou"},
        "Answer: [0.1, 0.1, 0.5, 0.5]",  # normalised, against a pixel gold on a 100x50 image
    ),
    (
        {"question": "What is held?", "answer": "a red umbrella", "reward_type": "open"},
        "Answer: an umbrella, red",
    ),
    ({"question": "Which animals?", "answer": "two dogs", "reward_type": "open"}, "Answer: cats"),
    ({"question": "What colour?", "answer": "blue", "reward_type": "open"}, "Answer: blueish"),
    (  # neither a letter nor an option's value: rules cannot map it, the judge can
        {"question": "Which? A. 30° B. 45°", "answer": "B", "reward_type": "choice"},
        "Answer: forty-five degrees",
    ),
]
JUDGE_SAYS = {6: "Yes", 7: "**No.**", 8: "Hard to say: partly.", 9: "yes"}


@pytest.fixture
def verify_workspace(tmp_path: Path, server: ScriptedServer) -> Path:
    rows = [dict(row) for row, _ in VERIFY_ROWS]
    distilled = {n: (f"Thinking about Q{n}.", answer) for n, (_, answer) in enumerate(VERIFY_ROWS)}
    root = build(tmp_path, server, rows, distilled)
    server.responder = lambda request, attempt: Reply.ok("unused")
    assert run_step(root, "rewrite", model="test-vlm").outcomes == {"skipped:unchanged": 10}
    assert server.count == 0
    return root


def verify(root: Path, **options) -> VerifyReport:
    rules_only = options.pop("rules_only", False)
    with Workspace.open(root, write=True) as ws:
        return run_verify(
            ws,
            VerifyOptions(judge=LlmOptions(**options), rules_only=rules_only, math_workers=1),
        )


def test_verify_decides_by_rules_first_and_asks_the_judge_only_for_the_rest(
    verify_workspace: Path, server: ScriptedServer
) -> None:
    root = verify_workspace
    asked: dict[int, str] = {}

    def judge(request: dict, attempt: int) -> Reply:
        n = marker(request)
        asked[n] = request["messages"][0]["content"]
        return Reply.ok(JUDGE_SAYS[n])

    server.responder = judge
    report = verify(root, model="test-judge")
    assert sorted(asked) == [6, 7, 8, 9]  # open-ended, and a choice answered without a letter
    assert "Ground truth: a red umbrella" in asked[6] and "an umbrella, red" in asked[6]
    assert report.decided_by_rules == 6 and report.sent_to_judge == 4
    results = current(root, "verify")
    expected = {
        0: ("done", None, "digit", "3"),
        1: ("rejected", "incorrect", "digit", "5"),
        2: ("done", None, "choice", "So (B)"),
        3: ("rejected", "incorrect", "choice", "A"),
        4: ("done", None, "math", "0.5"),
        5: ("done", None, "iou", "[0.1, 0.1, 0.5, 0.5]"),
        6: ("done", None, "judge:test-judge", "an umbrella, red"),
        7: ("rejected", "incorrect", "judge:test-judge", "cats"),
        8: ("rejected", "unverifiable", "judge:test-judge", "blueish"),
        9: ("done", None, "judge:test-judge", "forty-five degrees"),
    }
    for n, (status, reason, method, extracted) in expected.items():
        got_status, output, got_reason, got_method = results[n]
        assert (got_status, got_reason, got_method) == (status, reason, method), n
        assert output["method"] == method and output["extracted"] == extracted, n
        verdict = "correct" if status == "done" else reason
        assert output["verdict"] == verdict, n
    assert results[8][1]["note"] == "judge_unclear"
    assert results[8][1]["judge_reply"] == "Hard to say: partly."
    assert results[5][1]["score"] == pytest.approx(1.0)
    assert report.to_dict()["verdicts"] == {"correct": 6, "incorrect": 3, "unverifiable": 1}
    runs = query(root, "SELECT status FROM runs WHERE command LIKE '%verify%'")
    assert runs == [("finished",)]
    # Everything is decided: a rerun has nothing to do and pays nothing.
    assert verify(root, model="test-judge").selected == 0 and server.count == 4


def test_rules_only_never_calls_a_model(verify_workspace: Path, server: ScriptedServer) -> None:
    report = verify(verify_workspace, rules_only=True)
    assert server.count == 0 and report.sent_to_judge == 0 and report.decided_by_rules == 6
    results = current(verify_workspace, "verify")
    assert results[6][:3] == (
        "rejected",
        {
            "verdict": "unverifiable",
            "method": "rules",
            "extracted": "an umbrella, red",
            "note": "open_ended",
        },
        "unverifiable",
    )
    assert results[9][1]["note"] == "no_choice_in_answer" and results[9][3] == "choice"
    assert results[0][0] == "done"


def test_a_judge_without_its_key_fails_at_once_when_open_samples_need_it(
    verify_workspace: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLAA_TEST_KEY")
    with pytest.raises(SettingsError, match="VLAA_TEST_KEY"):
        verify(verify_workspace, model="test-r1")
    assert current(verify_workspace, "verify") == {} and server.count == 0


def test_a_math_check_that_hangs_is_cut_and_handed_to_the_judge(
    tmp_path: Path, server: ScriptedServer
) -> None:
    rows = [{"question": "Big?", "answer": "3", "reward_type": "math"}]
    root = build(tmp_path, server, rows, {0: ("Thinking.", "Answer: $9^{9^{9^{9}}}$")})
    run_step(root, "rewrite", model="test-vlm")
    server.responder = lambda request, attempt: Reply.ok("Yes")
    with Workspace.open(root, write=True) as ws:
        report = run_verify(
            ws,
            VerifyOptions(
                judge=LlmOptions(model="test-judge"), math_deadline_s=0.5, math_workers=1
            ),
        )
    assert report.sent_to_judge == 1 and server.count == 1
    assert current(root, "verify")[0][3] == "judge:test-judge"


def test_a_judge_that_cannot_be_reached_or_fails_every_request_exits_1(
    verify_workspace: Path, server: ScriptedServer, cli
) -> None:
    root = verify_workspace
    url = closed_url()

    unreachable = cli("verify", "-w", root, "--judge", "test-judge", "--base-url", url)

    assert unreachable.returncode == 1
    [line] = [line for line in unreachable.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: endpoint {url}: unreachable: ")
    assert line.endswith("4 samples left pending: run again once it answers")
    assert len(current(root, "verify")) == 6 and server.count == 0  # the rules' verdicts stand
    runs = query(root, "SELECT status FROM runs WHERE command LIKE '%verify%'")
    assert runs == [("stopped",)]

    server.responder = lambda request, attempt: Reply.error(400, message="no such model")
    failing = cli("verify", "-w", root, "--judge", "test-judge")
    assert failing.returncode == 1
    assert (
        "error: all 4 requests to test-judge failed (4 bad_request; first: 400 no such model)"
        in (failing.stderr)
    )
    assert "failed:bad_request" in failing.stdout and server.count == 4


def test_verify_and_status_through_the_cli(
    verify_workspace: Path, server: ScriptedServer, cli
) -> None:
    root = verify_workspace
    dry = cli("verify", "-w", root, "--judge", "test-judge", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["sent_to_judge"] == 4 and planned["judge"]["dry_run"]["requests"] == 4
    assert server.count == 0 and current(root, "verify") == {}  # a dry run records nothing
    done = cli("verify", "-w", root, "--rules-only")
    assert done.returncode == 0, done.stderr
    assert "6 decided by rules, 0 needed the judge" in done.stdout
    assert "unverifiable" in done.stdout and server.count == 0
    status = json.loads(cli("status", "-w", root, "--json").stdout)
    assert status["steps"]["rewrite"] == {"done": 10, "rejected": 0, "failed": 0, "pending": 0}
    assert status["steps"]["verify"] == {"done": 4, "rejected": 6, "failed": 0, "pending": 0}
    assert status["rejects"]["verify"] == {"incorrect": 2, "unverifiable": 4}
