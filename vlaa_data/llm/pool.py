"""One step's requests spread over a fleet of OpenAI-compatible endpoints (vLLM replicas).

A step's ``base_url`` may name several endpoints (``settings.endpoint_entries``); an
``EndpointPool`` then stands in for the HTTP backend. Each endpoint takes at most its own
``concurrency`` requests at a time and a request goes to the least-loaded endpoint that is
healthy. An attempt that could not connect, was dropped, timed out or got a 5xx is sent again
to another endpoint at once, while the one that failed rests: a cool-down that doubles while
it keeps failing, ended by a ``GET /models`` that answers. A refused connection sent nothing,
so it is not counted as a retry; a dropped, timed-out or 5xx request may have been processed,
so it is. A 429 only sends the retry elsewhere. Only when no endpoint can be reached, each
one's ``GET /models`` confirming it, do requests raise ``EndpointUnreachable``, naming them
all.

``ChatReply.base_url`` says which endpoint answered. The cache key never names one, so a reply
from any endpoint of the fleet serves every later run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vlaa_data.errors import SettingsError
from vlaa_data.llm.backends import BackendSpec, make_backend
from vlaa_data.llm.http import AttemptFailed, HttpBackend, _estimate_tokens
from vlaa_data.llm.limits import RateLimiter
from vlaa_data.llm.presets import Endpoint
from vlaa_data.llm.reply import CallFailed, ChatReply, EndpointUnreachable
from vlaa_data.llm.request import ChatRequest

if TYPE_CHECKING:
    from vlaa_data.doctor.checks import Check

__all__ = ["EndpointPool", "PoolMember"]

# How long an endpoint that failed rests before it is asked GET /models again; the rest doubles
# while it keeps failing, up to the longest.
COOLDOWN_S = 1.0
COOLDOWN_MAX_S = 30.0


@dataclass(frozen=True)
class PoolMember:
    """An endpoint of the pool and the most requests it takes at a time."""

    endpoint: Endpoint
    concurrency: int


@dataclass(eq=False)
class _Node:
    member: PoolMember
    backend: HttpBackend
    in_flight: int = 0
    sent: int = 0
    answered: int = 0
    strikes: int = 0  # failures in a row, for the length of the rest
    down: str | None = None  # why it cannot be reached, while it cannot
    resting: asyncio.Task[None] | None = None  # the cool-down and re-probe, while it rests

    @property
    def url(self) -> str:
        return self.member.endpoint.shown_base_url or ""

    @property
    def load(self) -> float:
        return self.in_flight / self.member.concurrency


class EndpointPool:
    """Completes requests on the least-loaded healthy endpoint of several (see the module
    docstring); one backend to the runner. ``probe`` checks them all before the first
    request. ``on_note(line)`` hears of endpoints skipped, lost and back; ``on_retry(reason)``
    of each retry, as with ``HttpBackend``."""

    name = "openai"

    def __init__(
        self,
        members: Sequence[tuple[PoolMember, HttpBackend]],
        *,
        max_retries: int,
        probe_timeout_s: float,
        limiter: RateLimiter | None = None,
        on_retry: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        if not members:
            raise ValueError("a pool needs at least one endpoint")
        self._nodes = [_Node(member, backend) for member, backend in members]
        self._max_retries = max_retries
        self._probe_timeout_s = probe_timeout_s
        self._limiter = limiter
        self._on_retry = on_retry
        self._on_note = on_note
        self._changed = asyncio.Event()  # a slot was freed or an endpoint came back
        self._confirming = asyncio.Lock()
        self._down: str | None = None  # every endpoint is unreachable: why

    @classmethod
    def from_spec(
        cls,
        spec: BackendSpec,
        members: Sequence[PoolMember],
        *,
        probe_timeout_s: float,
        on_retry: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> EndpointPool:
        """A pool of ``spec``'s HTTP backend at each member's endpoint; ``spec``'s RPM and TPM
        limits hold for the pool as a whole."""
        backends = []
        for member in members:
            backend = make_backend(replace(spec, endpoint=member.endpoint, rpm=None, tpm=None))
            if not isinstance(backend, HttpBackend):
                raise SettingsError(f"several endpoints need an HTTP backend, not {spec.kind}")
            backends.append((member, backend))
        limiter = RateLimiter(spec.rpm, spec.tpm) if (spec.rpm or spec.tpm) else None
        return cls(
            backends,
            max_retries=spec.max_retries,
            probe_timeout_s=probe_timeout_s,
            limiter=limiter,
            on_retry=on_retry,
            on_note=on_note,
        )

    @property
    def answered(self) -> dict[str, int]:
        """Replies received from each endpoint (its URL, credentials redacted)."""
        return {node.url: node.answered for node in self._nodes}

    async def probe(self) -> str | None:
        """Ask every endpoint ``GET /models``, as a single endpoint is asked before the first
        request. Those that do not answer (or refuse the key) rest and are noted; the line
        naming each, when none can take requests."""
        checks = await self._check_all()
        failed = [(node, check) for node, check in checks if check is not None]
        if len(failed) == len(self._nodes):
            return _none_answer([check for _, check in failed])
        left = len(self._nodes) - len(failed)
        others = "the other endpoint takes" if left == 1 else f"the other {left} endpoints take"
        for node, check in failed:
            self._on_note_line(
                f"{check.name}: {check.detail}; it takes no requests until it answers, "
                f"{others} them"
            )
            node.down = check.detail
            self._rest(node)
        return None

    async def complete(self, request: ChatRequest) -> ChatReply:
        self._raise_if_down()
        body = await self._nodes[0].backend.encode(request)
        tokens = 0
        if self._limiter is not None and self._limiter.counts_tokens:
            tokens = _estimate_tokens(request)
        retries = refusals = 0
        last: _Node | None = None
        while True:
            node = await self._take(avoid=last)
            try:
                if self._limiter is not None:
                    await self._limiter.acquire(tokens)
                reply = await node.backend.send(body)
            except AttemptFailed as exc:
                failure = exc
            except CallFailed as exc:  # a 200 that is not a completion: it may have been billed
                exc.base_url = node.url
                raise
            else:
                node.answered += 1
                node.strikes = 0
                reply.base_url = node.url
                return reply
            finally:
                node.in_flight -= 1
                self._changed.set()
            last = node
            detail = node.backend.scrub(failure.detail)
            if failure.connect:  # nothing was sent: try another endpoint, no retry spent
                refusals += 1
                self._lose(node, detail)
                await self._confirm_down()
                self._raise_if_down()
                if refusals <= len(self._nodes) + self._max_retries:
                    continue
            elif failure.reason in ("connection_error", "timeout") or (failure.status or 0) >= 500:
                self._rest(node)  # dropped, silent or failing: the others take its requests
            if not failure.retryable or retries == self._max_retries or failure.connect:
                attempts = retries + refusals + 1
                if attempts > 1:
                    detail = f"{detail} ({attempts} attempts)"
                failed = CallFailed(failure.reason, detail)
                failed.base_url = node.url  # where the last attempt went
                raise failed
            retries += 1
            if self._on_retry is not None:
                self._on_retry(failure.reason)
            if node.resting is None and not any(n.resting is None for n in self if n is not node):
                # It goes back to the same endpoint: wait as a single endpoint's retry would.
                wait = failure.retry_after
                await asyncio.sleep(node.backend.backoff(retries - 1) if wait is None else wait)

    async def aclose(self) -> None:
        tasks = [node.resting for node in self if node.resting is not None]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(node.backend.aclose() for node in self))

    def __iter__(self) -> Iterator[_Node]:
        return iter(self._nodes)

    async def _take(self, avoid: _Node | None) -> _Node:
        """A slot at the least-loaded healthy endpoint, waiting for one; after a failure,
        at another endpoint than ``avoid`` while another is healthy."""
        while True:
            self._raise_if_down()
            healthy = [node for node in self if node.resting is None]
            others = [node for node in healthy if node is not avoid]
            if avoid is not None and others:
                healthy = others
            free = [node for node in healthy if node.in_flight < node.member.concurrency]
            if free:
                # Equally loaded, the one sent the fewest: light traffic goes round the fleet.
                node = min(free, key=lambda n: (n.load, n.sent))
                node.in_flight += 1
                node.sent += 1
                return node
            self._changed.clear()
            await self._changed.wait()

    def _raise_if_down(self) -> None:
        if self._down is not None:
            raise EndpointUnreachable(self._down)

    def _rest(self, node: _Node) -> None:
        """Take no requests to ``node`` until its cool-down is over and it answers again."""
        if node.resting is None:
            node.strikes += 1
            node.resting = asyncio.create_task(self._recover(node))

    def _lose(self, node: _Node, why: str) -> None:
        """``node`` could not be reached: it rests, and a note says so once."""
        if node.down is None:
            self._on_note_line(
                f"endpoint {node.url} stopped answering ({why}); "
                "the other endpoints take its requests until it answers again"
            )
        node.down = why
        self._rest(node)

    async def _recover(self, node: _Node) -> None:
        from vlaa_data.doctor.endpoints import endpoint_check

        wait = min(COOLDOWN_S * 2 ** (node.strikes - 1), COOLDOWN_MAX_S)
        while True:
            await asyncio.sleep(wait)
            check = await endpoint_check(node.member.endpoint, timeout_s=self._probe_timeout_s)
            if check is None:
                self._revive(node)
                return
            self._lose(node, check.detail)
            await self._confirm_down()
            if self._down is not None or node.resting is not asyncio.current_task():
                return  # the fleet is given up, or this endpoint came back meanwhile
            wait = min(wait * 2, COOLDOWN_MAX_S)

    def _revive(self, node: _Node) -> None:
        task, node.resting = node.resting, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if node.down is not None:
            self._on_note_line(f"endpoint {node.url} answers again")
            node.down = None
        self._changed.set()

    async def _confirm_down(self) -> None:
        """When no endpoint could be reached at its last try, ask each ``GET /models`` once
        more: those that answer come back, and if none does the pool is given up."""
        async with self._confirming:
            if self._down is not None or any(node.down is None for node in self):
                return
            checks = await self._check_all()
            back = [node for node, check in checks if check is None]
            for node in back:
                self._revive(node)
            if not back:
                self._down = _none_answer([check for _, check in checks], mid_run=True)
                self._changed.set()

    async def _check_all(self) -> list[tuple[_Node, Check | None]]:
        """Each endpoint with what its ``GET /models`` says is wrong, None where nothing is."""
        from vlaa_data.doctor.endpoints import endpoint_check

        timeout_s = self._probe_timeout_s
        checks = [endpoint_check(node.member.endpoint, timeout_s=timeout_s) for node in self]
        return list(zip(self._nodes, await asyncio.gather(*checks), strict=True))

    def _on_note_line(self, line: str) -> None:
        if self._on_note is not None:
            self._on_note(line)


def _none_answer(checks: Sequence[Check | None], *, mid_run: bool = False) -> str:
    """One line naming every endpoint and why it cannot take requests."""
    found = [check for check in checks if check is not None]
    each = "; ".join(f"{check.name}: {check.detail}" for check in found)
    verb = "can be reached any more" if mid_run else "can take requests"
    line = f"none of the {len(found)} endpoints {verb}: {each}"
    return f"{line}; {found[0].fix}" if found and found[0].fix else line
