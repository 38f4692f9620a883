"""Step 1, collect: rows of a source become samples with validated, content-addressed images.

Bad rows never stop a collect: each is recorded in ``collect_rejects`` with a reason code and
the run goes on. Collecting the same source again adds nothing (ids are stable), and within a
source the first sample with a given image wins (the paper keeps unique images).

Images are loaded, decoded and written by a pool of worker processes; the main process does
everything else and is the only one that touches the database.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from vlaa_data import __version__
from vlaa_data.answers import infer_reward_type, normalise_choice
from vlaa_data.images import ImageInfo, ImageRejected, ImageStore, inspect_image
from vlaa_data.rewards.registry import REWARD_TYPES
from vlaa_data.sources.base import RawSample, RowRejected, Source, content_id, row_preview
from vlaa_data.store.shards import Shard
from vlaa_data.workspace import Workspace

__all__ = ["CollectReport", "collect"]

# Below this many images a worker pool costs more to start than it saves.
_POOL_THRESHOLD = 256


@dataclass
class CollectReport:
    source: str
    run_id: str
    collected: int = 0
    already_present: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    shard: Shard | None = None
    other_shards: int = 0  # rows skipped because their sample belongs to another shard

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "run_id": self.run_id,
            "collected": self.collected,
            "already_present": self.already_present,
            "rejected": self.rejected_total,
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "shard": str(self.shard) if self.shard else None,
            "other_shards": self.other_shards,
            "seconds": round(self.seconds, 3),
        }


class _RowProblem(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class _Candidate:
    sample_id: str
    source_id: str
    question: str
    answer: str
    reward_type: str
    context_json: str
    raw: RawSample


def _text(value: Any, field_name: str) -> str:
    if value is None:
        raise _RowProblem(f"missing_{field_name}", f"the row has no {field_name}")
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _RowProblem("invalid_utf8", f"{field_name} is not valid UTF-8") from exc
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _RowProblem("malformed_row", f"{field_name} is a {type(value).__name__}, not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _RowProblem("invalid_utf8", f"{field_name} is not valid UTF-8") from exc
    text = value.strip()
    if not text:
        raise _RowProblem(f"missing_{field_name}", f"{field_name} is empty")
    return text


def _context_json(context: dict[str, Any]) -> str:
    try:
        text = json.dumps(context, ensure_ascii=False, sort_keys=True)
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _RowProblem("invalid_utf8", "context text is not valid UTF-8") from exc
    except (TypeError, ValueError) as exc:
        raise _RowProblem("malformed_row", f"context is not JSON-serialisable: {exc}") from exc
    return text


def _answer_and_type(answer: str, declared: str | None) -> tuple[str, str]:
    if declared is not None and declared not in REWARD_TYPES:
        raise _RowProblem(
            "bad_reward_type", f"reward type {declared!r} is not one of {', '.join(REWARD_TYPES)}"
        )
    reward_type = declared or infer_reward_type(answer)
    if reward_type == "choice":
        letter = normalise_choice(answer)
        if letter is None:
            raise _RowProblem("bad_answer", f"choice answer {answer[:40]!r} names no option letter")
        return letter, reward_type
    return answer, reward_type


def _sampled(rows: Iterator[Any], limit: int | None, seed: int | None) -> Iterator[Any]:
    """The first ``limit`` rows, or with a seed a reproducible random ``limit`` of them."""
    if limit is None:
        return rows
    if seed is None:
        return islice(rows, limit)
    # Keep the rows with the smallest seeded keys, then give them back in source order.
    rng = random.Random(seed)
    kept = heapq.nsmallest(limit, ((rng.random(), i, row) for i, row in enumerate(rows)))
    return (row for _, _, row in sorted(kept, key=lambda item: item[1]))


@dataclass
class _Batch:
    candidates: list[_Candidate] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    outcomes: Iterable[ImageInfo | ImageRejected] = ()


_worker_store: ImageStore | None = None
_worker_limits: tuple[int, int] = (0, 0)


def _init_worker(root: str, max_pixels: int, max_bytes: int) -> None:
    global _worker_store, _worker_limits
    _worker_store = ImageStore(Path(root))
    _worker_limits = (max_pixels, max_bytes)


def _process_image(raw: RawSample) -> ImageInfo | ImageRejected:
    assert _worker_store is not None
    try:
        if raw.image is None:
            raise ImageRejected("image_missing", "the row names no image")
        data = raw.image.load(max_bytes=_worker_limits[1])
        info = inspect_image(data, max_pixels=_worker_limits[0], max_bytes=_worker_limits[1])
        _worker_store.write(info, data)
        return info
    except ImageRejected as rejected:
        return rejected


class _ImagePool:
    """Runs ``_process_image`` in-process for small inputs, in worker processes otherwise."""

    def __init__(self, root: Path, max_pixels: int, max_bytes: int, workers: int) -> None:
        self._init_args = (str(root), max_pixels, max_bytes)
        self._workers = workers
        self._executor: ProcessPoolExecutor | None = None
        _init_worker(*self._init_args)

    def map(self, raws: list[RawSample]) -> Iterable[ImageInfo | ImageRejected]:
        if self._workers <= 1 or (self._executor is None and len(raws) < _POOL_THRESHOLD):
            return [_process_image(raw) for raw in raws]
        if self._executor is None:
            import multiprocessing

            # forkserver: never fork a process that holds a DuckDB connection and its threads.
            method = "forkserver" if sys.platform != "win32" else "spawn"
            self._executor = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context(method),
                initializer=_init_worker,
                initargs=self._init_args,
            )
        chunk = max(1, len(raws) // (self._workers * 4))
        return self._executor.map(_process_image, raws, chunksize=chunk)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)


class _Collector:
    def __init__(
        self,
        workspace: Workspace,
        source: Source,
        name: str,
        keep_dupes: bool,
        command: str,
        shard: Shard | None,
    ) -> None:
        self.ws = workspace
        self.command = command
        self.source = source
        self.name = name
        self.keep_dupes = keep_dupes
        self.shard = shard
        store = workspace.store
        self.existing_ids = store.sample_ids(name)
        self.image_owner = {} if keep_dupes else store.image_owners(name)
        self.known_images = store.known_images()
        self.seen_ids: Counter[str] = Counter()
        self.report = CollectReport(source=name, run_id="", shard=shard)

    def run(self, on_progress: Callable[[int], None] | None) -> CollectReport:
        store = self.ws.store
        settings = self.ws.settings.collect
        started = time.monotonic()
        run_settings = {"collect": settings.model_dump(), "source": self.name}
        if self.shard is not None:
            run_settings["shard"] = str(self.shard)
        with store.run(self.command, __version__, run_settings) as run:
            self.report.run_id = run_id = run.id
            run.counts = self.report.to_dict
            workers = settings.workers or (os.cpu_count() or 1)
            pool = _ImagePool(self.ws.root, settings.max_pixels, settings.max_image_bytes, workers)
            try:
                self._collect(pool, run_id, on_progress)
            finally:
                pool.close()
                self.report.seconds = time.monotonic() - started
        return self.report

    def _collect(
        self, pool: _ImagePool, run_id: str, on_progress: Callable[[int], None] | None
    ) -> None:
        """Read, check and write every row, one batch at a time."""
        settings = self.ws.settings.collect
        rows = self.source.rows()
        if not self.source.handles_limit:
            rows = _sampled(rows, self.source.options.limit, self.source.options.seed)
        processed = 0
        # Two batches in flight: workers process images of the next batch while this
        # process writes the previous one.
        pending: _Batch | None = None
        while batch := list(islice(rows, settings.batch_size)):
            prepared = self._prepare(batch, pool, run_id)
            if pending is not None:
                self._finish(pending, run_id)
            pending = prepared
            processed += len(batch)
            if on_progress:
                on_progress(processed)
        if pending is not None:
            self._finish(pending, run_id)

    def _prepare(self, batch: list[Any], pool: _ImagePool, run_id: str) -> _Batch:
        """Check rows and hand their images to the pool; nothing is written yet."""
        prepared = _Batch()

        for item in batch:
            if isinstance(item, RowRejected):
                key = item.row_key or content_id(row_preview(item.row))
                if self._elsewhere(f"{self.name}/{key}"):
                    continue
                self._reject(prepared, run_id, key, item.reason, item.detail, item.row)
                continue
            candidate = self._candidate(item, prepared, run_id)
            if candidate is not None:
                prepared.candidates.append(candidate)
        prepared.outcomes = pool.map([c.raw for c in prepared.candidates])
        return prepared

    def _reject(
        self, batch: _Batch, run_id: str, row_key: str, reason: str, detail: str, row: Any
    ) -> None:
        self.report.rejected[reason] += 1
        batch.rejects.append(
            {
                "source": self.name,
                "row_key": row_key,
                "reason": reason,
                "detail": detail[:500],
                "row_json": row_preview(row),
                "run_id": run_id,
            }
        )

    def _finish(self, prepared: _Batch, run_id: str) -> None:
        """Deduplicate by image and write the batch in one transaction."""
        images: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for candidate, outcome in zip(prepared.candidates, prepared.outcomes, strict=True):
            if isinstance(outcome, ImageRejected):
                self._reject(
                    prepared,
                    run_id,
                    candidate.source_id,
                    outcome.reason,
                    outcome.detail,
                    candidate.raw.row,
                )
                continue
            owner = self.image_owner.get(outcome.sha)
            if owner is not None:
                self._reject(
                    prepared,
                    run_id,
                    candidate.source_id,
                    "duplicate_image",
                    f"same image as {owner}",
                    candidate.raw.row,
                )
                continue
            if not self.keep_dupes:
                self.image_owner[outcome.sha] = candidate.sample_id
            if outcome.sha not in self.known_images:
                self.known_images.add(outcome.sha)
                images.append(
                    {
                        "sha": outcome.sha,
                        "path": outcome.relative_path,
                        "width": outcome.width,
                        "height": outcome.height,
                        "format": outcome.format,
                        "bytes": outcome.bytes,
                    }
                )
            samples.append(
                {
                    "id": candidate.sample_id,
                    "source": self.name,
                    "source_id": candidate.source_id,
                    "image_sha": outcome.sha,
                    "question": candidate.question,
                    "answer": candidate.answer,
                    "reward_type": candidate.reward_type,
                    "context": candidate.context_json,
                    "run_id": run_id,
                }
            )
            results.extend(self._imported_results(candidate, run_id))
            self.existing_ids.add(candidate.sample_id)
            self.report.collected += 1
        self.ws.store.write_collect_batch(
            images=images, samples=samples, rejects=prepared.rejects, results=results
        )

    def _candidate(self, raw: RawSample, batch: _Batch, run_id: str) -> _Candidate | None:

        source_id = raw.source_id or content_id(
            raw.question, raw.answer, raw.image.identity() if raw.image else None
        )
        sample_id = f"{self.name}/{source_id}"
        if self._elsewhere(sample_id):
            return None
        self.seen_ids[sample_id] += 1
        if self.seen_ids[sample_id] > 1:
            key = f"{source_id}#{self.seen_ids[sample_id]}"
            self._reject(
                batch,
                run_id,
                key,
                "duplicate_id",
                f"id {source_id!r} appears more than once",
                raw.row,
            )
            return None
        if sample_id in self.existing_ids:
            self.report.already_present += 1
            return None
        try:
            question = _text(raw.question, "question")
            answer, reward_type = _answer_and_type(_text(raw.answer, "answer"), raw.reward_type)
            context = dict(raw.context)
            if answer != raw.answer and isinstance(raw.answer, str):
                context.setdefault("original_answer", raw.answer)
            context_json = _context_json(context)
        except _RowProblem as problem:
            self._reject(batch, run_id, source_id, problem.reason, problem.detail, raw.row)
            return None
        return _Candidate(sample_id, source_id, question, answer, reward_type, context_json, raw)

    def _elsewhere(self, sample_id: str) -> bool:
        """Whether the row of ``sample_id`` belongs to another shard (skipped, not rejected:
        that shard's collect records it)."""
        if self.shard is None or self.shard.contains(sample_id):
            return False
        self.report.other_shards += 1
        return True

    def _imported_results(self, candidate: _Candidate, run_id: str) -> list[dict[str, Any]]:
        imported = candidate.raw.imported
        if not imported:
            return []
        ids = self.ws.store.allocate_result_ids(len(imported))
        rows = []
        parent = None
        for result_id, result in zip(ids, imported, strict=True):
            rows.append(
                {
                    "id": result_id,
                    "sample_id": candidate.sample_id,
                    "step": result.step,
                    "attempt": 1,
                    "status": "done",
                    "output": json.dumps(result.output),
                    "reason": None,
                    "method": result.method,
                    "model": result.model,
                    "prompt_hash": None,
                    "run_id": run_id,
                    "parent_id": parent,
                }
            )
            parent = result_id
        return rows


def collect(
    workspace: Workspace,
    source: Source,
    *,
    name: str,
    keep_duplicate_images: bool = False,
    on_progress: Callable[[int], None] | None = None,
    command: str | None = None,
    shard: Shard | None = None,
) -> CollectReport:
    """Collect every row of ``source`` into ``workspace`` under the source name ``name``.

    ``command`` is what the ``runs`` table records as the command line. With ``shard``, only
    the rows whose sample id belongs to it are collected (``--limit`` and ``--seed`` choose
    the rows first, so every shard sees the same rows); the others are counted as
    ``other_shards``. Images are deduplicated within the shard only.
    """
    command = command or f"collect {name}"
    collector = _Collector(workspace, source, name, keep_duplicate_images, command, shard)
    return collector.run(on_progress)
