"""The command line as a user runs it: exit codes, one-line errors, reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CliRun, png_bytes, write_jsonl

COMMANDS = ["init", "collect", "status", "sql"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    assert "Example:" in result.stdout
    assert "--workspace" in result.stdout


def test_init_then_collect_then_status(cli, tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    assert cli("init", ws).returncode == 0
    collected = cli("collect", "synthetic", "--limit", "12", "--seed", "1", "-w", ws)
    assert collected.returncode == 0, collected.stderr
    assert "12 collected, 0 rejected" in collected.stdout
    again = cli("collect", "synthetic", "--limit", "12", "--seed", "1", "--json", "-w", ws)
    assert json.loads(again.stdout)["collected"] == 0
    assert json.loads(again.stdout)["already_present"] == 12
    status = json.loads(cli("status", "--json", "-w", ws).stdout)
    assert status["sources"] == {"synthetic": 12}
    runs = json.loads(
        cli(
            "sql", "SELECT command, status FROM runs ORDER BY started_at", "--json", "-w", ws
        ).stdout
    )
    assert runs[0] == {
        "command": f"vlaa-data collect synthetic --limit 12 --seed 1 -w {ws}",
        "status": "finished",
    }


def test_workspace_comes_from_the_environment(cli, tmp_path: Path) -> None:
    ws = tmp_path / "env-ws"
    cli("init", ws)
    result = cli("status", "--json", env={"VLAA_WORKSPACE": str(ws)})
    assert result.returncode == 0
    assert json.loads(result.stdout)["samples"] == 0


def test_no_workspace_is_a_one_line_error(cli, tmp_path: Path) -> None:
    result = cli("status", "-w", tmp_path / "nowhere")
    assert result.returncode == 1
    assert result.stderr.startswith("error: no workspace at")
    assert result.stderr.count("\n") == 1


def test_debug_variable_shows_the_traceback(cli, tmp_path: Path) -> None:
    result = cli("status", "-w", tmp_path / "nowhere", env={"VLAA_DATA_DEBUG": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "WorkspaceNotFound" in result.stderr


def test_unreadable_source_exits_non_zero_with_one_line(cli, workspace: Path, tmp_path: Path):
    (tmp_path / "broken.json").write_text("[{")
    result = cli("collect", tmp_path / "broken.json", "-w", workspace)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "not valid JSON" in result.stderr
    missing = cli("collect", "arxivqa", tmp_path / "nope.jsonl", "-w", workspace)
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_bad_rows_still_exit_zero_with_a_summary(cli, workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    write_jsonl(
        tmp_path / "rows.jsonl",
        [
            {"question": "q", "answer": "a", "image": "a.png"},
            {"question": "q", "answer": "", "image": "a.png"},
            {"question": "q2", "answer": "b", "image": "../../etc/passwd"},
        ],
    )
    result = cli("collect", tmp_path / "rows.jsonl", "-w", workspace)
    assert result.returncode == 0, result.stderr
    assert "rejected: missing_answer" in result.stdout
    assert "rejected: image_path_escapes_root" in result.stdout
    assert "1 collected, 2 rejected" in result.stdout


def test_bad_map_option(cli, workspace: Path) -> None:
    result = cli("collect", "synthetic", "--map", "question", "-w", workspace)
    assert result.returncode == 1 and "expected FIELD=COLUMN" in result.stderr


def test_sql_reads_and_refuses_writes(cli, workspace: Path) -> None:
    cli("collect", "synthetic:counting", "--limit", "3", "-w", workspace)
    rows = json.loads(
        cli(
            "sql",
            "SELECT reward_type, count(*) AS n FROM samples GROUP BY 1",
            "--json",
            "-w",
            workspace,
        ).stdout
    )
    assert rows == [{"reward_type": "digit", "n": 3}]
    refused = cli("sql", "DELETE FROM samples", "-w", workspace)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: read-only: DELETE statements are refused (use SELECT)"
    count = json.loads(
        cli("sql", "SELECT count(*) AS n FROM samples", "--json", "-w", workspace).stdout
    )
    assert count == [{"n": 3}]


HOLD_LOCK = """
import sys, time
from vlaa_data.workspace import Workspace
ws = Workspace.open(sys.argv[1], write=True)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_told_who_holds_the_workspace(cli, workspace: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(workspace)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        blocked = cli("collect", "synthetic", "--limit", "2", "-w", workspace)
        assert blocked.returncode == 1
        assert f"workspace in use by PID {holder.pid}" in blocked.stderr
        assert "Traceback" not in blocked.stderr
        reader = cli("status", "-w", workspace)
        assert reader.returncode == 1
        assert f"workspace in use by PID {holder.pid}" in reader.stderr
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder: no stale lock to clean up by hand.
    after = cli("collect", "synthetic", "--limit", "2", "-w", workspace)
    assert after.returncode == 0, after.stderr


def test_sql_prints_values_as_text_not_markup(workspace, cli) -> None:
    done = cli("sql", "SELECT '[x1, y1, x2, y2]' AS box, '[bold]b[/bold]' AS tag", "-w", workspace)
    assert done.returncode == 0, done.stderr
    assert "[x1, y1, x2, y2]" in done.stdout and "[bold]b[/bold]" in done.stdout


def _commands() -> list[tuple[list[str], object]]:
    """Every leaf command with its argv path, groups such as ``filter`` walked."""
    import typer.main

    from vlaa_data.cli import app

    found, todo = [], [([], typer.main.get_command(app))]
    while todo:
        path, command = todo.pop()
        children = getattr(command, "commands", None)
        if children:
            todo.extend(([*path, name], child) for name, child in children.items())
        else:
            found.append((path, command))
    return found


def test_help_shows_every_bracket_and_tag_its_text_holds() -> None:
    """Help is rendered as Markdown by Rich: "[default: …]" must survive as text, and a bare
    "<think>" would vanish as HTML unless written in backticks."""
    import re

    from typer.testing import CliRunner

    from vlaa_data.cli import app

    runner = CliRunner()
    commands = _commands()
    assert len(commands) > 15
    for path, command in commands:
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        tokens = {t for text in texts for t in re.findall(r"\[[^\]\n]*\]|<[^>\s]*>", text)}
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "2000"}, color=False)
        assert result.exit_code == 0, path
        shown = " ".join(result.output.split())
        for token in tokens:
            assert " ".join(token.split()) in shown, (path, token)


def test_help_lists_the_commands_in_pipeline_order(cli) -> None:
    import re

    result = cli("--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"^│ ([a-z]+) ", result.stdout, re.MULTILINE)
    assert listed == [
        "init", "collect", "caption", "distill", "rewrite", "verify", "filter", "split",
        "export", "push", "run", "merge", "status", "sql", "presets", "doctor", "reward", "train",
        "eval",
    ]  # fmt: skip


def test_shell_completion_is_offered_under_the_command_name(cli) -> None:
    result = cli("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "_VLAA_DATA_COMPLETE=complete_bash" in result.stdout
    assert "--install-completion" in cli("--help").stdout


def test_the_database_memory_limit_is_one_line_saying_what_to_do(
    cli: CliRun, workspace: Path
) -> None:
    assert cli("collect", "synthetic-r1", "--limit", "50", "-w", workspace).returncode == 0
    result = cli("verify", "--rules-only", "-w", workspace, env={"VLAA_STORE_MEMORY_LIMIT": "1MB"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the database reached its memory")
    assert "VLAA_STORE_MEMORY_LIMIT" in lines[0] and "Traceback" not in result.stderr
