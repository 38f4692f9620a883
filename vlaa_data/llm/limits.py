"""Client-side request and token budgets per minute, so a run stays under a provider's limits.

Each budget is a continuous token bucket holding one minute's worth: a run may burst up to the
per-minute amount, then proceeds at the steady rate. Waiters are served first come, first served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter"]

# Float refills rarely land exactly on the amount asked for; this much short still counts as full.
_EPSILON = 1e-9


class _Bucket:
    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.level = per_minute
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.level = min(self.capacity, self.level + elapsed * self.rate)
        self.updated = now

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` fits; an amount over the capacity fits in a full bucket."""
        missing = min(amount, self.capacity) - self.level
        return missing / self.rate if missing > _EPSILON else 0.0


class RateLimiter:
    """Waits until one more request, and ``tokens`` more tokens, fit in the per-minute budgets.

    ``rpm`` and ``tpm`` are requests and tokens per minute; ``None`` means no limit on that
    count. A request larger than the whole token budget goes through once the bucket is full
    and leaves it in debt, which later requests wait out, so it cannot block forever.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number or None, not {value!r}")
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._requests = _Bucket(rpm, now) if rpm is not None else None
        self._tokens = _Bucket(tpm, now) if tpm is not None else None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def counts_tokens(self) -> bool:
        """Whether ``acquire`` uses its ``tokens`` argument (so callers can skip estimating)."""
        return self._tokens is not None

    async def acquire(self, tokens: int = 0) -> None:
        if self._requests is None and self._tokens is None:
            return
        # Holding the lock while sleeping makes later callers queue behind the first waiter;
        # asyncio.Lock wakes its waiters in FIFO order.
        async with self._loop_lock():
            while True:
                now = self._clock()
                wait = 0.0
                if self._requests is not None:
                    self._requests.refill(now)
                    wait = self._requests.wait(1)
                if self._tokens is not None:
                    self._tokens.refill(now)
                    wait = max(wait, self._tokens.wait(tokens))
                if wait <= 0.0:
                    break
                await self._sleep(wait)
            if self._requests is not None:
                self._requests.level -= 1
            if self._tokens is not None:
                self._tokens.level -= tokens

    def _loop_lock(self) -> asyncio.Lock:
        # A lock belongs to one event loop; a limiter may outlive one (tests, repeated runs).
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    def __repr__(self) -> str:
        return f"RateLimiter(rpm={self.rpm!r}, tpm={self.tpm!r})"
