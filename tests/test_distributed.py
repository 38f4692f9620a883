"""``vlaa-data run --executor local``: the pipeline as shards on datatrove's local executor
with 2 workers, merged and released, ends where the single-process run ends; a rerun pays for
nothing; a shard that cannot finish stops the run in one line and a rerun finishes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import query
from tests.llm.conftest import closed_url
from vlaa_data.distributed import EngineOptions
from vlaa_data.errors import SettingsError
from vlaa_data.testing.server import ScriptedServer, default_responder

SAMPLES = 240
TASKS = 4
_COLLECT = f'\n[[run.collect]]\nsource = "synthetic"\nlimit = {SAMPLES}\nseed = 1\n'

pytestmark = pytest.mark.slow


def _run(
    workspace: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("VLAA_WORKSPACE", None)
    env.update(COLUMNS="200", NO_COLOR="1", VLAA_COLLECT_WORKERS="1")
    env.update(VLAA_VERIFY_MATH_WORKERS="1", **extra)
    return subprocess.run(
        [sys.executable, "-m", "vlaa_data", "run", "--json", "-w", str(workspace), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _workspace(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "vlaa_data", "init", str(root)], check=True)
    with (root / "vlaa.toml").open("a", encoding="utf-8") as config:
        config.write(_COLLECT)
    return root


def _current(workspace: Path) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Each sample's current result of each step, by content: no ids, runs or times."""
    rows = query(
        workspace,
        "SELECT sample_id, step, status, reason, output::VARCHAR, method, model, attempt "
        "FROM current_results",
    )
    return {(r[0], r[1]): r[2:] for r in rows}


def _release(workspace: Path) -> list[tuple[Any, ...]]:
    return query(
        workspace,
        "SELECT split, sample_id, position, why FROM release_samples "
        "WHERE release = 'v1' ORDER BY ALL",
    )


def _exported(workspace: Path) -> dict[str, bytes]:
    folder = workspace / "releases" / "v1" / "hf" / "data"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(default_responder) as running:
        yield running


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, server: ScriptedServer) -> dict[str, Any]:
    """The same pipeline run in one process and as 4 shards on 2 workers."""
    root = tmp_path_factory.mktemp("distributed")
    single, sharded = _workspace(root / "single"), _workspace(root / "sharded")
    one = _run(single, "--base-url", server.url)
    assert one.returncode == 0, one.stderr
    single_requests = len(server.requests)
    many = _run(
        sharded, "--base-url", server.url, "--executor", "local", "--tasks", str(TASKS),
        "--workers", "2",
    )  # fmt: skip
    assert many.returncode == 0, many.stderr[-3000:]
    return {
        "single": single,
        "sharded": sharded,
        "single_report": json.loads(one.stdout),
        "report": json.loads(many.stdout),
        "sharded_requests": len(server.requests) - single_requests,
    }


def test_the_sharded_run_equals_the_single_process_run(runs: dict[str, Any]) -> None:
    single, sharded = runs["single"], runs["sharded"]
    ids = [row[0] for row in query(sharded, "SELECT id FROM samples ORDER BY id")]
    assert len(ids) == SAMPLES
    assert ids == [row[0] for row in query(single, "SELECT id FROM samples ORDER BY id")]
    assert _current(sharded) == _current(single)
    assert _release(sharded) == _release(single) and _release(single)
    assert _exported(sharded) == _exported(single)  # the same rows: the same shard files
    report, alone = runs["report"], runs["single_report"]
    assert report["executor"] == "local" and report["tasks"] == TASKS
    assert list(report["steps"]) == list(alone["steps"])
    for step in ("collect", "caption", "distill", "rewrite", "verify", "split"):
        for state in ("done", "rejected", "failed", "pending"):
            assert report["steps"][step][state] == alone["steps"][step][state], (step, state)
    # every shard sent its own samples' requests once: as many as the single run sent
    sent = sum(outcome["requests"] for outcome in alone["steps"].values())
    assert runs["sharded_requests"] == sent > 0
    assert sum(o["requests"] for o in report["steps"].values()) == sent


def test_each_task_worked_on_its_own_shard(runs: dict[str, Any]) -> None:
    sharded = runs["sharded"]
    counts = []
    for rank in range(TASKS):
        shard = sharded / "shards" / f"{rank}-of-{TASKS}"
        ids = [row[0] for row in query(shard, "SELECT id FROM samples")]
        counts.append(len(ids))
        shards = {row[0] for row in query(shard, "SELECT DISTINCT settings->>'shard' FROM runs")}
        assert shards <= {f"{rank}/{TASKS}", None}
    assert sum(counts) == SAMPLES and all(counts)


def test_a_second_sharded_run_sends_nothing(runs: dict[str, Any], server: ScriptedServer) -> None:
    sharded = runs["sharded"]
    before, files = len(server.requests), _exported(sharded)
    again = _run(
        sharded, "--base-url", server.url, "--executor", "local", "--tasks", str(TASKS),
        "--workers", "2",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(server.requests) == before
    assert _exported(sharded) == files
    merged = query(sharded, "SELECT count(*) FROM samples")[0][0]
    assert merged == SAMPLES  # merging the same shards again adds nothing


def test_a_shard_that_cannot_reach_its_endpoint_stops_the_run_in_one_line(
    tmp_path: Path, server: ScriptedServer
) -> None:
    workspace = _workspace(tmp_path / "ws")
    text = (workspace / "vlaa.toml").read_text(encoding="utf-8")
    text = text.replace(f"limit = {SAMPLES}", "limit = 16")
    text = text.replace("timeout_s = 600", "timeout_s = 0.5\nbackoff_s = 0.02")
    (workspace / "vlaa.toml").write_text(text.replace("max_retries = 6", "max_retries = 1"))
    down = _run(workspace, "--base-url", closed_url(), "--executor", "local", "--tasks", "2")
    assert down.returncode == 1
    line = down.stderr.strip().splitlines()[-1]
    assert line.startswith("error: shard-") and "127.0.0.1" in line
    assert not (workspace / "releases" / "v1").exists()

    up = _run(workspace, "--base-url", server.url, "--executor", "local", "--tasks", "2")
    assert up.returncode == 0, up.stderr[-3000:]
    report = json.loads(up.stdout)
    assert report["steps"]["caption"]["done"] == 16 and report["steps"]["distill"]["done"] == 16


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "spark"}, "unknown executor 'spark'; use one of local, slurm, ray"),
        ({"executor": "slurm"}, "--executor slurm needs --partition"),
        ({"tasks": 0}, "--tasks must be at least 1"),
    ],
)
def test_bad_engine_options_are_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        EngineOptions(**options)


def test_a_sharded_run_needs_samples_or_sources_to_shard(tmp_path: Path) -> None:
    """No samples and no [[run.collect]] sources: nothing to work on (samples collected by
    hand are enough: tests/test_shard_from_parent.py)."""
    subprocess.run([sys.executable, "-m", "vlaa_data", "init", str(tmp_path / "ws")], check=True)
    result = _run(tmp_path / "ws", "--executor", "local")
    assert result.returncode == 1
    assert result.stderr.startswith("error: --executor local: nothing to work on:")
    assert "[[run.collect]]" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_ray_executor_makes_the_same_release(
    runs: dict[str, Any], tmp_path: Path, server: ScriptedServer
) -> None:
    pytest.importorskip("ray", reason="the Ray executor needs the distributed extra")
    workspace = _workspace(tmp_path / "ray")
    done = _run(workspace, "--base-url", server.url, "--executor", "ray", "--tasks", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["executor"] == "ray"
    assert _current(workspace) == _current(runs["single"])
    assert _exported(workspace) == _exported(runs["single"])


# A stand-in for Slurm's sbatch, srun and scontrol: each job runs at once, here, one array
# task after the other, with the variables Slurm sets; a job whose `afterok` dependency failed
# is skipped.
_SBATCH = r"""#!PYTHON
import os, re, subprocess, sys
from pathlib import Path
state = Path(__file__).with_name("jobs")
state.mkdir(exist_ok=True)
args, script = sys.argv[1:-1], sys.argv[-1]
text = Path(script).read_text()
job = len(list(state.iterdir())) + 1
env = dict(os.environ, SLURM_JOB_ID=str(job), SLURM_NODELIST="localhost")
for arg in args:
    if arg.startswith("--export=ALL,"):
        env.update(kv.split("=", 1) for kv in arg[len("--export=ALL,"):].split(","))
    if arg.startswith("--dependency=afterok:"):
        if (state / arg.rsplit(":", 1)[1]).read_text() != "ok":
            (state / str(job)).write_text("skipped")
            print(f"Submitted batch job {job}")
            sys.exit(0)
array = re.search(r"#SBATCH --array=0-(\d+)", text)
ok = True
for index in range(int(array[1]) + 1 if array else 1):
    env["SLURM_ARRAY_TASK_ID"] = str(index)
    ok &= subprocess.run(["bash", script], env=env).returncode == 0
(state / str(job)).write_text("ok" if ok else "failed")
print(f"Submitted batch job {job}")
"""
_SRUN = r"""#!/bin/bash
while [[ "$1" == -* ]]; do [[ "$1" == "-n" ]] && shift; shift; done
exec "$@"
"""
_SCONTROL = r"""#!/bin/bash
echo "${@: -1}"  # scontrol show hostnames LIST: one host here
"""


@pytest.fixture
def slurm(tmp_path: Path) -> dict[str, str]:
    """PATH with the stand-in sbatch, srun and scontrol first."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(_SBATCH.replace("PYTHON", sys.executable))
    (bin_dir / "srun").write_text(_SRUN)
    (bin_dir / "scontrol").write_text(_SCONTROL)
    for name in ("sbatch", "srun", "scontrol"):
        (bin_dir / name).chmod(0o755)
    return {"PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]])}


def test_the_slurm_executor_submits_an_array_and_a_merge_that_depends_on_it(
    runs: dict[str, Any], tmp_path: Path, server: ScriptedServer, slurm: dict[str, str]
) -> None:
    workspace = _workspace(tmp_path / "slurm")
    done = _run(
        workspace, "--base-url", server.url, "--executor", "slurm", "--tasks", "2",
        "--partition", "cpu", "--time", "01:00:00", env=slurm,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["submitted"] is True
    logs = Path(report["logging_dir"])
    script = (logs / "shards" / "launch_script.slurm").read_text(encoding="utf-8")
    assert "#SBATCH --array=0-1" in script and "#SBATCH --partition=cpu" in script
    assert "#SBATCH --time=01:00:00" in script
    assert (logs / "release" / "launch_script.slurm").is_file()
    # the stand-in ran the jobs as they were submitted: the merged release is there
    assert _current(workspace) == _current(runs["single"])
    assert _exported(workspace) == _exported(runs["single"])


def test_a_task_that_reaches_the_memory_limit_stops_the_run_in_one_line(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path / "ws")
    text = (workspace / "vlaa.toml").read_text(encoding="utf-8")
    text = text.replace('source = "synthetic"', 'source = "synthetic-r1"')
    (workspace / "vlaa.toml").write_text(text.replace(f"limit = {SAMPLES}", "limit = 100"))
    result = _run(
        workspace, "--steps", "collect,verify", "--rules-only", "--executor", "local",
        env={"VLAA_STORE_MEMORY_LIMIT": "1MB"},
    )  # fmt: skip
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the database reached its memory limit (Out of Memory")
    assert "VLAA_STORE_MEMORY_LIMIT" in line
