"""Runs an LLM step: select ready samples, plan requests, reuse cached replies, send the rest
with bounded concurrency under a budget, and record every outcome.

Nothing is paid twice: a request's key (model id, messages with images by sha, params) is
looked up in ``llm_calls`` before it is sent, and every reply is written there with its
tokens and cost. Nothing is hidden: a sample that cannot be finished is recorded ``failed``
with a reason code, a reply cut at ``max_tokens`` is recorded ``truncated`` with its text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vlaa_data import __version__
from vlaa_data.errors import SettingsError
from vlaa_data.llm.backend import Backend
from vlaa_data.llm.backends import BackendSpec, backend_kind, endpoint_for, make_backend
from vlaa_data.llm.estimate import estimate_input_tokens
from vlaa_data.llm.presets import Endpoint, Preset, load_presets
from vlaa_data.llm.reply import CallFailed, ChatReply, EndpointUnreachable, parse_completion
from vlaa_data.llm.request import ChatRequest
from vlaa_data.llm.templates import load_template
from vlaa_data.settings import EndpointEntry, StepSettings, endpoint_entries
from vlaa_data.steps.llm_step import (
    Estimate,
    LlmOptions,
    LlmReport,
    LlmStep,
    Outcome,
    Progress,
    Skip,
    result_row,
)
from vlaa_data.steps.llm_writer import ResultWriter
from vlaa_data.steps.registry import get_step, llm_steps
from vlaa_data.store.journal import Journal
from vlaa_data.store.llm import CachedCall, ReadySample
from vlaa_data.workspace import Workspace

if TYPE_CHECKING:
    from vlaa_data.llm.pool import EndpointPool, PoolMember

__all__ = ["leaves_scripted", "preflight", "run_llm_step"]

_PLAN_CHUNK = 128  # samples planned and looked up in the cache at a time
_PLAN_SLICE = 32  # samples planned between two turns of the event loop
_FIRST_CHUNK = 8  # the first chunks are smaller, so the first requests leave at once
_ESTIMATE_CHUNK = 2000  # a dry run plans in larger chunks: nothing waits on it
_PROGRESS_EVERY_S = 0.2
# Uncommitted replies allowed before requests wait for the database (at least the concurrency).
_MIN_BACKLOG = 64
# The longest the endpoint has to answer GET /models before the first request: the step's
# timeout, within these bounds.
_PROBE_TIMEOUT_S = (5.0, 30.0)


def _build_step(name: str, ws: Workspace, options: LlmOptions, prompt: str | None) -> LlmStep:
    info = get_step(name)
    if info.plan is None:
        raise SettingsError(
            f"step {name} asks no model; the LLM steps are {', '.join(llm_steps())}"
        )
    template = load_template(name, prompt or info.prompt)
    return info.plan_class().build(template, ws, options)


@dataclass
class _Plan:
    """Everything a run needs, resolved from flags, vlaa.toml and presets."""

    step: LlmStep
    endpoint: Endpoint
    backend: BackendSpec
    params: dict[str, Any]
    max_pixels: int | None
    concurrency: int
    flush_s: float
    budget_usd: float | None
    # False when the run leaves the scripted stand-in's replies behind (see _leaves_scripted).
    keep_scripted: bool = True
    # Several endpoints (a fleet, see vlaa_data.llm.pool); ``endpoint`` is the first of them.
    fleet: tuple[PoolMember, ...] = ()

    @property
    def preset(self) -> Preset:
        return self.endpoint.preset

    @property
    def probe_timeout_s(self) -> float:
        low, high = _PROBE_TIMEOUT_S
        return min(max(self.backend.timeout_s, low), high)


def _resolve(ws: Workspace, name: str, options: LlmOptions) -> _Plan:
    kind = backend_kind(options.backend)  # an unknown name fails first
    llm = ws.settings.llm
    step_settings: StepSettings = ws.settings.step(name)
    model = options.model or step_settings.model
    presets = load_presets(ws.settings.presets)
    entries = endpoint_entries(options.base_url or step_settings.base_url)
    resolve = functools.partial(
        endpoint_for,
        options.backend,
        model,
        presets,
        api_key_env=options.api_key_env or step_settings.api_key_env,
        needs_key=not options.dry_run,
    )
    endpoint = resolve(base_url=entries[0].url if entries else None)
    fleet = _fleet(options, entries, endpoint, resolve, llm.concurrency)
    # --concurrency, else the endpoint's own, else [llm]'s; a fleet's is the sum of its own.
    own = entries[0].concurrency if entries else None
    concurrency = options.concurrency or own or llm.concurrency
    if fleet:
        concurrency = sum(member.concurrency for member in fleet)
    step = _build_step(name, ws, options, options.prompt or step_settings.prompt)
    if getattr(step, "needs_vision", False) and not endpoint.preset.vision:
        raise SettingsError(
            f"{name} sends images, and preset {endpoint.preset.name} does not accept them; "
            "use a vision model (e.g. --model gpt-4o)"
        )
    params = dict(endpoint.preset.params)
    max_tokens = options.max_tokens or step_settings.max_tokens
    if max_tokens:
        params["max_tokens"] = max_tokens
    max_pixels = options.max_pixels or llm.max_pixels
    return _Plan(
        step=step,
        endpoint=endpoint,
        backend=BackendSpec(
            kind=options.backend,
            endpoint=endpoint,
            timeout_s=options.timeout_s or llm.timeout_s,
            max_retries=llm.max_retries if options.max_retries is None else options.max_retries,
            max_pixels=max_pixels,
            backoff_s=llm.backoff_s,
            rpm=options.rpm or llm.rpm,
            tpm=options.tpm or llm.tpm,
            batch_size=options.batch_size,
            state_dir=ws.root,
            poll_s=llm.batch_poll_s,
        ),
        params=params,
        max_pixels=max_pixels,
        # A batch backend gets whole batches in flight, not --concurrency requests.
        concurrency=kind.in_flight(concurrency, options.batch_size),
        flush_s=llm.flush_s,
        # 0 is a budget too: nothing may be sent.
        budget_usd=step_settings.budget_usd if options.budget_usd is None else options.budget_usd,
        fleet=fleet,
    )


def _fleet(
    options: LlmOptions,
    entries: Sequence[EndpointEntry],
    first: Endpoint,
    resolve: Callable[..., Endpoint],
    default_concurrency: int,
) -> tuple[PoolMember, ...]:
    """The pool's members when ``entries`` name several endpoints, else none: each endpoint
    takes ``--concurrency`` requests at a time, else its entry's ``concurrency``, else
    ``[llm] concurrency``."""
    if len(entries) < 2:
        return ()
    if options.backend != "openai":
        raise SettingsError(f"several endpoints need the openai backend, not {options.backend}")
    from vlaa_data.llm.pool import PoolMember

    endpoints = [first] + [resolve(base_url=entry.url) for entry in entries[1:]]
    return tuple(
        PoolMember(endpoint, options.concurrency or entry.concurrency or default_concurrency)
        for endpoint, entry in zip(endpoints, entries, strict=True)
    )


def preflight(ws: Workspace, name: str, options: LlmOptions) -> None:
    """Raise now, with the one-line error a run would give, if step ``name`` cannot start
    with ``options`` (an unknown preset, a missing API key, a prompt file that is missing)."""
    _resolve(ws, name, options)


def run_llm_step(
    ws: Workspace,
    name: str,
    options: LlmOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    samples: Sequence[ReadySample] | None = None,
    run_id: str | None = None,
) -> LlmReport:
    """Run LLM step ``name`` (caption, distill, rewrite, verify's judge, aha's judge) on
    ``ws``; see the module docstring.

    ``samples`` replaces the selection of ready samples (verify passes those its rules left
    undecided, aha those with keyword hits); ``run_id`` records the results under a run the
    caller started and finishes.
    ``options.dry_run`` only plans and prices (the workspace may be open read-only). Before
    the first request the endpoint must answer ``GET /models``; when it cannot be reached
    then, or later stops taking connections, the run stops with ``report.stopped ==
    "unreachable"`` and leaves the unsent samples pending (``report.stop_line()`` says so).
    Raises ``KeyboardInterrupt`` after recording what finished when interrupted (SIGINT/SIGTERM).
    """
    plan = _resolve(ws, name, options)
    plan.keep_scripted = not _leaves_scripted(ws, plan, probe=not options.dry_run)
    parent_step, waiting = None, 0
    if samples is None:
        parent_step = get_step(name).parent
        samples = ws.store.ready_samples(
            name,
            parent_step=parent_step,
            sources=options.sources,
            shard=options.shard,
            redo=options.redo,
            retry_truncated=options.retry_truncated,
            limit=options.limit,
            redo_scripted=not plan.keep_scripted,
        )
        if parent_step is not None:
            waiting = ws.store.waiting_for_parent(
                name, parent_step, sources=options.sources, shard=options.shard
            )
    report = LlmReport(
        step=name,
        model=plan.preset.name,
        backend=options.backend,
        run_id=None,
        selected=len(samples),
        budget_usd=plan.budget_usd,
        recovered=ws.recovered_replies,
        parent_step=parent_step,
        waiting=waiting,
    )
    report.progress.total = len(samples)
    started = time.monotonic()
    if options.dry_run:
        report.estimate = _estimate(ws, plan, samples, options)
        report.seconds = time.monotonic() - started
        return report
    command = options.command or f"vlaa-data {name}"
    with ws.store.run(command, __version__, _run_settings(plan, options), run_id=run_id) as run:
        report.run_id = run.id
        run.counts = report.to_dict
        try:
            asyncio.run(_Run(ws, plan, options, report, on_progress).drive(samples))
        except (KeyboardInterrupt, asyncio.CancelledError):  # CancelledError: SIGTERM
            report.stopped = "interrupted"
            raise KeyboardInterrupt from None
        finally:
            report.seconds = time.monotonic() - started
            report.left_pending = report.selected - report.progress.finished
            deadline = time.monotonic() + 60
            while not ws.store.resume() and time.monotonic() < deadline:
                time.sleep(0.1)  # a reader has the file for a moment
        run.stopped = report.stopped
    return report


def leaves_scripted(ws: Workspace, name: str, options: LlmOptions) -> bool:
    """Whether a run of step ``name`` with ``options`` redoes the results that came from the
    scripted stand-in server (see ``_leaves_scripted``), for callers that select the samples
    themselves (verify)."""
    if not ws.store.has_scripted_replies(name):
        return False
    plan = _resolve(ws, name, replace(options, dry_run=True))  # its key is not needed here
    return _leaves_scripted(ws, plan, probe=not options.dry_run)


def _leaves_scripted(ws: Workspace, plan: _Plan, *, probe: bool) -> bool:
    """Whether this run leaves the scripted stand-in's replies behind: the ledger holds some
    for the step and the endpoint is not that server (``GET /models`` says; a dry run asks
    nothing and takes it for a real one). The samples whose result came from the stand-in
    are then redone, and its replies never taken from the cache: placeholders are not kept
    once a real model is asked. A stand-in after a stand-in resumes as usual."""
    if not ws.store.has_scripted_replies(plan.step.name):
        return False
    if not probe or not plan.endpoint.base_url:  # in-process models have none
        return True
    from vlaa_data.doctor.endpoints import serves_scripted

    async def all_scripted() -> bool:
        endpoints = [member.endpoint for member in plan.fleet] or [plan.endpoint]
        timeout_s = plan.probe_timeout_s
        return all(
            await asyncio.gather(*(serves_scripted(e, timeout_s=timeout_s) for e in endpoints))
        )

    return not asyncio.run(all_scripted())


def _run_settings(plan: _Plan, options: LlmOptions) -> dict[str, Any]:
    # What the run used, for the runs table. The key's variable name, never the key.
    return {
        "preset": plan.preset.name,
        "model": plan.preset.model,
        "backend": options.backend,
        "base_url": plan.endpoint.shown_base_url,
        "endpoints": {m.endpoint.shown_base_url: m.concurrency for m in plan.fleet} or None,
        "api_key_env": plan.endpoint.api_key_env,
        "params": plan.params,
        "max_pixels": plan.max_pixels,
        "concurrency": plan.concurrency,
        "rpm": plan.backend.rpm,
        "tpm": plan.backend.tpm,
        "budget_usd": plan.budget_usd,
        "redo": options.redo,
        "no_cache": options.no_cache,
    }


def _chunks(
    items: Sequence[ReadySample], size: int, first: int | None = None
) -> Iterator[Sequence[ReadySample]]:
    """Slices of ``items``: ``size`` long, or from ``first`` doubling up to ``size``."""
    start, step = 0, first or size
    while start < len(items):
        yield items[start : start + step]
        start += step
        step = min(2 * step, size)


def _estimate(
    ws: Workspace, plan: _Plan, samples: Sequence[ReadySample], options: LlmOptions
) -> Estimate:
    preset = plan.preset
    estimate = Estimate()
    max_out = int(plan.params.get("max_tokens") or preset.typical_output_tokens)
    seen = ws.store.mean_output_tokens(plan.step.name, preset.model)
    expected_out = min(max_out, int(seen or preset.typical_output_tokens))
    for chunk in _chunks(samples, _ESTIMATE_CHUNK):
        planned = [plan.step.plan(s, preset, plan.params, plan.max_pixels) for s in chunk]
        requests = [p for p in planned if isinstance(p, ChatRequest)]
        estimate.skipped += len(planned) - len(requests)
        cached = {}
        if not options.no_cache:
            keys = (r.key() for r in requests)
            cached = ws.store.cached_calls(keys, scripted=plan.keep_scripted)
        for request in requests:
            if request.key() in cached:
                estimate.cached += 1
                continue
            if not estimate.example_prompt:
                estimate.example_prompt = request.text()
            estimate.requests += 1
            estimate.tokens_in += estimate_input_tokens(request)
    estimate.tokens_out_expected = estimate.requests * expected_out
    estimate.tokens_out_max = estimate.requests * max_out
    estimate.cost_expected_usd = preset.cost(estimate.tokens_in, estimate.tokens_out_expected)
    estimate.cost_max_usd = preset.cost(estimate.tokens_in, estimate.tokens_out_max)
    return estimate


class _Run:
    """One pass of a step over its ready samples, inside one event loop."""

    def __init__(
        self,
        ws: Workspace,
        plan: _Plan,
        options: LlmOptions,
        report: LlmReport,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.ws = ws
        self.plan = plan
        self.options = options
        self.report = report
        self.progress = report.progress
        self.on_progress = on_progress
        assert report.run_id is not None
        self.writer = ResultWriter(
            ws.store,
            flush_s=plan.flush_s,
            journal=Journal(ws.root, report.run_id),
            max_backlog=max(plan.concurrency, _MIN_BACKLOG),
        )
        self.in_flight_usd = 0.0
        self._max_out = int(plan.params.get("max_tokens") or plan.preset.typical_output_tokens)
        self._expected_out = float(plan.preset.typical_output_tokens)
        self._out_seen = 0
        self._reply_arrived = asyncio.Event()
        self._probed = False
        self._sending: set[asyncio.Task[None]] = set()  # tasks awaiting the backend
        self._pool: EndpointPool | None = None

    async def drive(self, samples: Sequence[ReadySample]) -> None:
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, main.cancel)  # type: ignore[union-attr]
        if self.plan.budget_usd is not None:  # cost estimates only serve the budget
            seen = await asyncio.to_thread(
                self.ws.store.mean_output_tokens, self.plan.step.name, self.plan.preset.model
            )
            if seen:
                self._expected_out = seen
        backend = self._backend()
        await self.writer.start()
        ticker = asyncio.create_task(self._tick())
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self._dispatch(samples, backend, tasks)
            if tasks:
                await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            # Connections close while the last rows are written.
            closing = asyncio.ensure_future(backend.aclose())
            try:
                await self.writer.close()
            finally:
                await closing
                if self._pool is not None:
                    self.report.endpoints = self._pool.answered
                self._emit()
                with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signal.SIGTERM)

    async def _dispatch(
        self, samples: Sequence[ReadySample], backend: Backend, tasks: set[asyncio.Task[None]]
    ) -> None:
        """Send planned requests, at most ``concurrency`` at a time, while the budget allows."""
        lookahead = max(2 * self.plan.concurrency, _PLAN_CHUNK)
        queue: asyncio.Queue[tuple[ReadySample, ChatRequest, str] | None]
        queue = asyncio.Queue(maxsize=lookahead)
        planner = asyncio.create_task(self._plan_ahead(samples, queue))
        gate = asyncio.Semaphore(self.plan.concurrency)
        try:
            while (item := await queue.get()) is not None:
                sample, request, key = item
                cost = self._estimate_cost(request)
                fits = await self._fits_budget(cost)
                if self.report.stopped:  # the endpoint went away meanwhile
                    return
                if not fits:
                    self.report.stopped = "budget"
                    return
                if not self._probed:
                    self._probed = True
                    problem = await self._endpoint_problem()
                    if problem is not None:
                        self._halt(problem)
                        return
                await gate.acquire()
                if self.report.stopped:
                    gate.release()
                    return
                self.in_flight_usd += cost
                self.progress.in_flight += 1
                task = asyncio.create_task(self._send(backend, sample, request, key, cost))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _t: gate.release())
            await planner  # raises what stopped the planner, if anything did
        finally:
            planner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await planner

    async def _plan_ahead(
        self,
        samples: Sequence[ReadySample],
        queue: asyncio.Queue[tuple[ReadySample, ChatRequest, str] | None],
    ) -> None:
        """Plan requests ahead of the senders, while replies are awaited, so that a freed
        slot is refilled at once. Skips and cached replies are recorded here and never take
        a slot. Ends the queue with ``None``."""
        plan, step = self.plan, self.plan.step
        try:
            for chunk in _chunks(samples, _PLAN_CHUNK, first=_FIRST_CHUNK):
                planned: list[tuple[ReadySample, ChatRequest | Skip]] = []
                for part in _chunks(chunk, _PLAN_SLICE):
                    planned += [
                        (s, step.plan(s, plan.preset, plan.params, plan.max_pixels)) for s in part
                    ]
                    # Planning holds the loop: a slice at a time lets replies in between.
                    await asyncio.sleep(0)
                keys = {s.id: p.key() for s, p in planned if isinstance(p, ChatRequest)}
                cached = {}
                if keys and not self.options.no_cache:
                    lookup = functools.partial(
                        self.ws.store.cached_calls, scripted=self.plan.keep_scripted
                    )
                    cached = await self.writer.run(lookup, list(keys.values()))
                for sample, item in planned:
                    if isinstance(item, Skip):
                        self._record(sample, Outcome("done", item.output), method=item.method)
                        self.progress.skipped += 1
                        continue
                    key = keys[sample.id]
                    hit = cached.get(key)
                    if hit is not None:
                        self._replay(sample, key, hit)
                        continue
                    await queue.put((sample, item, key))
        except Exception:
            await queue.put(None)  # wake the dispatcher, which re-raises by awaiting us
            raise
        await queue.put(None)

    async def _fits_budget(self, next_cost: float) -> bool:
        """Whether one more request fits; waits for replies in flight when they decide it."""
        budget = self.plan.budget_usd
        if budget is None:
            return True
        if budget <= 0:  # even a free endpoint's request passes a budget of nothing
            return False
        while self.progress.cost_usd + self.in_flight_usd + next_cost > budget:
            if self.progress.in_flight == 0 or self.progress.cost_usd + next_cost > budget:
                return False
            self._reply_arrived.clear()
            await self._reply_arrived.wait()
        return True

    def _estimate_cost(self, request: ChatRequest) -> float:
        """What a request in flight may cost, for the budget (unused without one)."""
        preset = self.plan.preset
        if self.plan.budget_usd is None or not (preset.price_input or preset.price_output):
            return 0.0
        out = min(self._max_out, self._expected_out)
        return preset.cost(estimate_input_tokens(request), int(out))

    def _replay(self, sample: ReadySample, key: str, hit: CachedCall) -> None:
        """A cached reply: free, and recorded again only if it changes the sample's state."""
        reply = parse_completion(hit.response)
        outcome = self.plan.step.interpret(sample, reply, self.plan.preset)
        self.progress.cached += 1
        unchanged = (
            not self.options.redo
            and sample.current_key == key
            and sample.current_status == outcome.status
            and bool(sample.current_scripted) == hit.scripted
        )
        if unchanged:
            self._count(outcome)
            self.progress.finished += 1
            self.report.outcomes["unchanged"] += 1
            return
        origin = {"backend": hit.backend, "base_url": hit.base_url, "scripted": hit.scripted}
        self._record(sample, outcome, method="cache", key=key, origin=origin)

    def _backend(self) -> Backend:
        """The step's backend; for several endpoints, a pool of them."""
        if not self.plan.fleet:
            return make_backend(self.plan.backend, on_retry=self._count_retry)
        from vlaa_data.llm.pool import EndpointPool

        self._pool = EndpointPool.from_spec(
            self.plan.backend,
            self.plan.fleet,
            probe_timeout_s=self.plan.probe_timeout_s,
            on_retry=self._count_retry,
            on_note=self.report.notes.append,
        )
        return self._pool

    async def _endpoint_problem(self) -> str | None:
        """Why the endpoint cannot take requests (no answer, its key refused), as ``doctor``
        finds it; None when it answers, or when the model runs in-process. Of a fleet, the
        endpoints that cannot are noted and skipped; the line only when none can."""
        if self._pool is not None:
            return await self._pool.probe()
        if not self.plan.endpoint.base_url:  # in-process models have none
            return None
        from vlaa_data.doctor.endpoints import endpoint_problem

        return await endpoint_problem(self.plan.endpoint, timeout_s=self.plan.probe_timeout_s)

    def _halt(self, detail: str) -> None:
        """Stop for an unreachable endpoint: send nothing more and give up the requests still
        waiting on it (they cannot be answered); their samples stay pending with the rest."""
        if self.report.stopped is not None:
            return
        self.report.stopped, self.report.stop_detail = "unreachable", detail
        current = asyncio.current_task()
        for task in self._sending:
            if task is not current:
                task.cancel()
        self._reply_arrived.set()

    async def _send(
        self, backend: Backend, sample: ReadySample, request: ChatRequest, key: str, cost: float
    ) -> None:
        call, scripted, answered_by = None, None, None
        task = asyncio.current_task()
        assert task is not None
        self._sending.add(task)
        try:
            reply = await backend.complete(request)
        except EndpointUnreachable as exc:
            self._halt(exc.detail)
            return
        except asyncio.CancelledError:
            if self.report.stopped != "unreachable":
                raise
            return  # given up by _halt
        except CallFailed as exc:
            if exc.paid:
                call = self._ledger_row(sample, request, key, None, error=exc)
            answered_by = exc.base_url
            outcome = Outcome("failed", {"error": exc.detail}, exc.reason)
            self.report.request_failures[exc.reason] += 1
            if self.report.first_failure is None:
                self.report.first_failure = exc.detail
        else:
            call = self._ledger_row(sample, request, key, reply)
            scripted, answered_by = reply.scripted, reply.base_url
            self._account(reply)
            outcome = self.plan.step.interpret(sample, reply, self.plan.preset)
        finally:
            self._sending.discard(task)
            self.in_flight_usd -= cost
            self.progress.in_flight -= 1
            self._reply_arrived.set()
        self.progress.requests += 1
        # Journaled before the slot goes: from here on a kill -9 loses nothing, so only the
        # requests still in flight are ever sent twice. The commit follows in batches.
        origin = {
            "backend": self.plan.backend.kind,
            "base_url": answered_by or self.plan.endpoint.shown_base_url,
            "scripted": scripted,
        }
        self._record(
            sample, outcome, method="request", key=key, call=call, journal=True, origin=origin
        )
        await self.writer.room()

    def _account(self, reply: ChatReply) -> None:
        progress = self.progress
        progress.tokens_in += reply.tokens_in or 0
        progress.tokens_out += reply.tokens_out or 0
        progress.cost_usd += self.plan.preset.cost(reply.tokens_in, reply.tokens_out)
        if reply.tokens_out is not None:
            self._out_seen += 1
            self._expected_out += (reply.tokens_out - self._expected_out) / self._out_seen

    def _count(self, outcome: Outcome) -> None:
        if outcome.status == "failed":
            self.progress.failed += 1
        elif outcome.status == "truncated":
            self.progress.truncated += 1

    def _record(
        self,
        sample: ReadySample,
        outcome: Outcome,
        *,
        method: str,
        key: str | None = None,
        call: dict[str, Any] | None = None,
        journal: bool = False,
        origin: dict[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Buffer the result (and ledger row), journaling them first if asked; the future
        resolves once both are committed. ``origin``: the reply's backend, base_url and
        whether it was scripted."""
        self._count(outcome)
        self.progress.finished += 1
        label = outcome.status if outcome.status == "done" else f"{outcome.status}:{outcome.reason}"
        if outcome.status == "done" and method not in ("request", "cache"):
            label = f"skipped:{method}"
        elif outcome.status == "done" and method == "cache":
            label = "done:cached"
        self.report.outcomes[label] += 1
        assert self.report.run_id is not None
        result = result_row(
            sample,
            self.plan.step.name,
            outcome,
            method=method,
            run_id=self.report.run_id,
            model=self.plan.preset.model if key else None,
            key=key,
            **(origin or {}),
        )
        return self.writer.add(result, call, journal=journal)

    def _ledger_row(
        self,
        sample: ReadySample,
        request: ChatRequest,
        key: str,
        reply: ChatReply | None,
        *,
        error: CallFailed | None = None,
    ) -> dict[str, Any]:
        preset = self.plan.preset
        if reply is not None:
            response = reply.response_json()
        elif error is not None and error.raw is not None:
            response = json.dumps(error.raw, ensure_ascii=False)
        else:
            response = None
        return {
            "id": uuid.uuid4().hex,
            "key": key,
            "step": self.plan.step.name,
            "sample_id": sample.id,
            "backend": self.plan.backend.kind,
            "base_url": (
                (reply.base_url if reply else error.base_url if error else None)
                or self.plan.endpoint.shown_base_url
            ),
            "model": preset.model,
            "preset": preset.name,
            "request": request.rendered_json,
            "response": response,
            "status": "ok" if reply is not None else "unparseable",
            "error": error.detail if error else None,
            "finish_reason": reply.finish_reason if reply else None,
            "tokens_in": reply.tokens_in if reply else None,
            "tokens_out": reply.tokens_out if reply else None,
            "cost_usd": preset.cost(reply.tokens_in, reply.tokens_out) if reply else None,
            "latency_s": reply.latency_s if reply else None,
            "run_id": self.report.run_id,
            "scripted": reply.scripted if reply else False,
        }

    def _count_retry(self, reason: str) -> None:
        self.progress.retries += 1

    async def _tick(self) -> None:
        while True:
            self._emit()
            await asyncio.sleep(_PROGRESS_EVERY_S)

    def _emit(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
