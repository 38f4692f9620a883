"""``vlaa-data run --executor local|slurm|ray``: the pipeline as sharded tasks on datatrove.

The per-sample steps (collect to the aha filter) run as ``tasks`` datatrove tasks; task ``I``
runs them on shard ``I/tasks`` (``vlaa_data.store.shards``) in a workspace of its own,
``WORKSPACE/shards/I-of-N``, made with the workspace's vlaa.toml. Where the workspace holds
samples (collected by hand, or by an earlier run), each task first takes its shard of them,
with their results and cached replies (``merge_workspaces(..., shard=...)``; the tasks read
the workspace at once, under shared locks), so that its steps go on from where the workspace
is; then it collects its shard of the ``[[run.collect]]`` sources, if any. When every task is
done, one more task merges the shard workspaces into the workspace (``vlaa_data.merge``: the
rows a task took are matched by what identifies them, so none comes back twice) and runs the
release steps (split, export) there, as a single-process run would.

Why datatrove: its executors run one pipeline of picklable callables ``f(data, rank,
world_size)`` on a local process pool, a Slurm job array or a Ray cluster alike, record each
finished task in its logging folder (so a rerun after a crash runs only the unfinished ones),
and chain stages with ``depends``. Ray Data would give us the Ray half only, with our own
Slurm launcher beside it. Finished-task markers are kept per configuration (vlaa.toml, steps,
tasks, and what the workspace holds: its samples and results): change one and every task runs
again, which is cheap, as each step does only what is not yet done.

``limit`` and ``budget_usd`` are shared out over the tasks (each gets its share, rounded up
for the limit), so a run spends what a single-process run would.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from vlaa_data.errors import SettingsError, VlaaError, out_of_memory_line
from vlaa_data.steps.registry import RunOptions, StepOutcome, get_step, run_steps
from vlaa_data.store.shards import Shard
from vlaa_data.workspace import CONFIG_NAME, Workspace, init_workspace

__all__ = [
    "EXECUTORS",
    "EngineOptions",
    "EngineReport",
    "run_distributed",
    "shard_workspace",
]

EXECUTORS = ("local", "slurm", "ray")
_REPORT = "report.json"  # each task's report, in its logging folder


@dataclass
class EngineOptions:
    """How the tasks run. ``workers``: tasks at once (default: all of them); the Slurm fields
    are sbatch's (``partition`` is required there)."""

    executor: str = "local"
    tasks: int = 2
    workers: int | None = None
    partition: str | None = None
    time: str = "24:00:00"
    cpus_per_task: int = 2
    mem_per_cpu_gb: int = 2

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise SettingsError(
                f"unknown executor {self.executor!r}; use one of {', '.join(EXECUTORS)}"
            )
        if self.tasks < 1:
            raise SettingsError("--tasks must be at least 1")
        if self.executor == "slurm" and not self.partition:
            raise SettingsError("--executor slurm needs --partition (the Slurm partition)")


@dataclass
class EngineReport:
    """The shards' step outcomes added up, then the release steps' own."""

    executor: str
    tasks: int
    steps: list[StepOutcome] = field(default_factory=list)
    stopped: str | None = None
    release: str | None = None
    export: str | None = None
    submitted: bool = False  # Slurm: the jobs are queued, nothing has run yet
    logging_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "executor": self.executor,
            "tasks": self.tasks,
            "steps": {outcome.step: outcome.to_dict() for outcome in self.steps},
            "stopped": self.stopped,
            "release": self.release,
            "export": self.export,
            "submitted": self.submitted,
            "logging_dir": self.logging_dir,
        }


def shard_workspace(root: Path, rank: int, tasks: int) -> Path:
    """Where task ``rank`` of ``tasks`` keeps its shard."""
    return root / "shards" / f"{rank}-of-{tasks}"


def _split_steps(steps: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the per-sample steps the shards run, the release steps run after the merge)."""
    per_sample = tuple(s for s in steps if get_step(s).kind != "release")
    release = tuple(s for s in steps if get_step(s).kind == "release")
    return per_sample, release


def _options_dict(options: RunOptions) -> dict[str, Any]:
    data = asdict(options)
    data.pop("outcomes")
    data.pop("shard")
    data["steps"] = list(options.steps or run_steps())
    data["export_out"] = str(options.export_out) if options.export_out else None
    return data


def _run_options(data: dict[str, Any]) -> RunOptions:
    data = dict(data)
    data["export_out"] = Path(data["export_out"]) if data["export_out"] else None
    return RunOptions(**data)


class ShardTask:
    """Task ``rank``: the per-sample steps on shard ``rank/world_size``, in its own workspace
    (which first takes that shard of the workspace at ``root``, with ``from_parent``). A
    datatrove pipeline block (picklable: it holds plain data only)."""

    def __init__(
        self, root: str, options: dict[str, Any], logging_dir: str, from_parent: bool = False
    ) -> None:
        self.root, self.options, self.logging_dir = root, options, logging_dir
        self.from_parent = from_parent

    def __repr__(self) -> str:
        return f"vlaa-data shard of {self.root}"

    def __call__(self, data: Any, rank: int = 0, world_size: int = 1) -> None:
        from vlaa_data.merge import merge_workspaces
        from vlaa_data.pipeline import run_pipeline

        root = Path(self.root)
        shard_root = shard_workspace(root, rank, world_size)
        init_workspace(shard_root)
        # the workspace's settings, as they are now (a rerun after an edit takes the edit)
        (shard_root / CONFIG_NAME).write_bytes((root / CONFIG_NAME).read_bytes())
        options = _run_options(self.options)
        options.shard = Shard(rank, world_size)
        if options.limit is not None:
            options.limit = math.ceil(options.limit / world_size)
        if options.budget_usd is not None:
            options.budget_usd = options.budget_usd / world_size
        options.command = f"{options.command} (shard {options.shard})"
        with Workspace.open(shard_root, write=True) as ws:
            if self.from_parent:
                try:
                    merge_workspaces(
                        ws, [root], shard=options.shard, command=f"{options.command} (take)"
                    )
                except VlaaError as exc:  # the workspace refused: the run stops on this line
                    _write_report(
                        Path(self.logging_dir), f"shard-{rank}", {"steps": {}, "stopped": str(exc)}
                    )
                    raise
            report = run_pipeline(ws, options)
        _write_report(Path(self.logging_dir), f"shard-{rank}", report.to_dict())
        if report.stopped:  # the task is not marked done: a rerun runs it again
            raise VlaaError(f"shard {options.shard}: {report.stopped}")


class ReleaseTask:
    """The last task: merge every shard into the workspace, then the release steps there."""

    def __init__(self, root: str, options: dict[str, Any], tasks: int, logging_dir: str) -> None:
        self.root, self.options, self.tasks = root, options, tasks
        self.logging_dir = logging_dir

    def __repr__(self) -> str:
        return f"vlaa-data merge and release of {self.root}"

    def __call__(self, data: Any, rank: int = 0, world_size: int = 1) -> None:
        from vlaa_data.merge import merge_workspaces
        from vlaa_data.pipeline import run_pipeline

        root = Path(self.root)
        options = _run_options(self.options)
        shards = [shard_workspace(root, rank, self.tasks) for rank in range(self.tasks)]
        with Workspace.open(root, write=True) as ws:
            merged = merge_workspaces(ws, shards, command=f"{options.command} (merge)")
            report = run_pipeline(ws, options)
        result = report.to_dict()
        result["merged"] = merged.added()
        _write_report(Path(self.logging_dir), "release", result)
        if report.stopped:
            raise VlaaError(report.stopped)


def _write_report(folder: Path, name: str, report: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.{_REPORT}").write_text(json.dumps(report), encoding="utf-8")


def _logging_dir(root: Path, options: dict[str, Any], tasks: int, content: tuple[int, int]) -> Path:
    """One folder per configuration and content of the workspace: the same run again resumes,
    a changed one, or one on samples collected or results made since, starts anew."""
    config = (root / CONFIG_NAME).read_bytes()
    key = json.dumps([options, tasks, content], sort_keys=True).encode() + config
    return root / "shards" / "logs" / hashlib.sha256(key).hexdigest()[:12]


def _executor(
    engine: EngineOptions,
    pipeline: list[Any],
    tasks: int,
    logging_dir: Path,
    depends: Any = None,
    *,
    name: str,
    skip_completed: bool = True,
) -> Any:
    workers = min(engine.workers or tasks, tasks)
    if engine.executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=workers,
            logging_dir=str(logging_dir),
            depends=depends,
            skip_completed=skip_completed,
            start_method="spawn",  # no state of this process leaks into a task
        )
    if engine.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=workers,
            time=engine.time,
            partition=engine.partition,
            cpus_per_task=engine.cpus_per_task,
            mem_per_cpu_gb=engine.mem_per_cpu_gb,
            job_name=name,
            logging_dir=str(logging_dir),
            depends=depends,
            skip_completed=skip_completed,
            venv_path=os.path.join(sys.prefix, "bin", "activate")
            if sys.prefix != sys.base_prefix
            else None,
        )
    import ray
    from datatrove.executor.ray import RayPipelineExecutor

    if not ray.is_initialized():  # $RAY_ADDRESS names a cluster; else one starts here
        ray.init(log_to_driver=False)
    return RayPipelineExecutor(
        pipeline=pipeline,
        tasks=tasks,
        workers=workers,
        logging_dir=str(logging_dir),
        depends=depends,
        skip_completed=skip_completed,
        cpus_per_task=engine.cpus_per_task,
        mem_per_cpu_gb=engine.mem_per_cpu_gb,
    )


def _require(engine: EngineOptions) -> None:
    """Fail now, naming the extra to install, rather than in the first task."""
    needed = [("datatrove", "distributed")]
    if engine.executor == "ray":
        needed.append(("ray", "distributed"))
    for module, extra in needed:
        try:
            __import__(module)
        except ImportError:
            raise VlaaError(
                f"--executor {engine.executor} needs {module}: pip install 'vlaa-data[{extra}]'"
            ) from None


def run_distributed(root: Path, options: RunOptions, engine: EngineOptions) -> EngineReport:
    """Run ``options.steps`` on the workspace at ``root`` as ``engine.tasks`` shards, then
    merge them and make the release; see the module docstring. The workspace must exist and
    must not be open for writing elsewhere (the merge takes its lock)."""
    _require(engine)
    if not (root / CONFIG_NAME).is_file():
        raise VlaaError(f"no workspace at {root}: run `vlaa-data init {root}` first")
    # Opened for writing, so that replies a stopped run journaled are written before the
    # tasks read the workspace (they refuse one with a journal).
    with Workspace.open(root, write=True) as ws:
        sources = ws.settings.run.collect
        content = ws.store.content_mark()
    steps = tuple(options.steps) if options.steps is not None else run_steps()
    if not content[0] and not (sources and "collect" in steps):
        raise VlaaError(
            f"--executor {engine.executor}: nothing to work on: {root} holds no samples and "
            f"{CONFIG_NAME} has no [[run.collect]] sources for the tasks to collect; collect "
            f"some first (`vlaa-data collect SOURCE -w {root}`) or add such sources"
        )
    per_sample, release = _split_steps(steps)
    shard_options = _options_dict(replace(options, steps=per_sample))
    release_options = _options_dict(replace(options, steps=release))
    logging_dir = _logging_dir(root, shard_options, engine.tasks, content)
    report = EngineReport(engine.executor, engine.tasks, logging_dir=str(logging_dir))
    shards = _executor(
        engine,
        [ShardTask(str(root), shard_options, str(logging_dir), from_parent=content[0] > 0)],
        engine.tasks,
        logging_dir / "shards",
        name="vlaa-data-shards",
    )
    last = _executor(
        engine,
        [ReleaseTask(str(root), release_options, engine.tasks, str(logging_dir))],
        1,
        logging_dir / "release",
        depends=shards,
        name="vlaa-data-release",
        skip_completed=False,  # the merge is idempotent, and later shards may have more
    )
    try:
        last.run()
    except Exception as exc:  # a task's own error: its report, or the engine's line
        report.stopped = _first_stop(logging_dir, engine.tasks) or _one_line(exc)
    if engine.executor == "slurm":
        report.submitted = True
        return report
    _gather(report, logging_dir, engine.tasks)
    _count_states(root, report)
    return report


def _count_states(root: Path, report: EngineReport) -> None:
    """Each counted step's states in the merged workspace, as ``status`` shows them."""
    from vlaa_data.status import build_status

    with Workspace.open(root, write=False) as ws:
        counts = build_status(ws.store).steps
    for outcome in report.steps:
        if outcome.step in counts:
            state = counts[outcome.step]
            outcome.done, outcome.rejected = state["done"], state["rejected"]
            outcome.failed, outcome.pending = state["failed"], state["pending"]


def _one_line(exc: Exception) -> str:
    """A task's error as one line (DuckDB's out-of-memory text runs over several)."""
    if type(exc).__name__ == "OutOfMemoryException":
        return out_of_memory_line(str(exc))
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"


def _first_stop(logging_dir: Path, tasks: int) -> str | None:
    for name in [*(f"shard-{rank}" for rank in range(tasks)), "release"]:
        path = logging_dir / f"{name}.{_REPORT}"
        if path.is_file():
            stopped = json.loads(path.read_text(encoding="utf-8")).get("stopped")
            if stopped:
                return f"{name}: {stopped}" if name != "release" else stopped
    return None


def _gather(report: EngineReport, logging_dir: Path, tasks: int) -> None:
    """Add up the shards' outcomes per step; the release steps' outcomes as they are."""
    totals: dict[str, StepOutcome] = {}
    numbers = ("done", "rejected", "failed", "pending", "requests", "tokens_in", "tokens_out")
    for rank in range(tasks):
        path = logging_dir / f"shard-{rank}.{_REPORT}"
        if not path.is_file():
            continue
        shard = json.loads(path.read_text(encoding="utf-8"))
        for name, outcome in shard["steps"].items():
            total = totals.setdefault(name, StepOutcome(name))
            total.ran = total.ran or outcome["ran"]
            for key in numbers:
                setattr(total, key, getattr(total, key) + outcome[key])
            total.cost_usd += outcome["cost_usd"]
            total.seconds = max(total.seconds, outcome["seconds"])  # tasks run side by side
            total.note = outcome["note"] or total.note
    report.steps = list(totals.values())
    path = logging_dir / f"release.{_REPORT}"
    if path.is_file():
        final = json.loads(path.read_text(encoding="utf-8"))
        for name, outcome in final["steps"].items():
            report.steps.append(StepOutcome(**{**outcome, "step": name}))
        report.release, report.export = final["release"], final["export"]
        report.stopped = report.stopped or final["stopped"]
