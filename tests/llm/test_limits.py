from __future__ import annotations

import asyncio

import pytest

from vlaa_data.llm.limits import RateLimiter


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def limiter(rpm=None, tpm=None) -> tuple[RateLimiter, FakeTime]:
    fake = FakeTime()
    return RateLimiter(rpm, tpm, clock=fake.clock, sleep=fake.sleep), fake


def test_no_limits_never_waits():
    rate, fake = limiter()

    async def main():
        for _ in range(1000):
            await rate.acquire(10**6)

    asyncio.run(main())
    assert fake.sleeps == []


def test_rpm_allows_a_minute_burst_then_the_steady_rate():
    rate, fake = limiter(rpm=60)

    async def main():
        for _ in range(60):
            await rate.acquire()
        assert fake.now == 1000.0
        for _ in range(10):
            await rate.acquire()

    asyncio.run(main())
    assert fake.now == pytest.approx(1010.0)
    assert all(s == pytest.approx(1.0) for s in fake.sleeps)


def test_tpm_waits_for_tokens_to_refill():
    rate, fake = limiter(tpm=600)  # 10 tokens a second

    async def main():
        await rate.acquire(500)
        await rate.acquire(100)
        assert fake.now == 1000.0
        await rate.acquire(50)

    asyncio.run(main())
    assert fake.now == pytest.approx(1005.0)


def test_a_request_bigger_than_the_budget_goes_through_and_leaves_a_debt():
    rate, fake = limiter(tpm=600)

    async def main():
        await rate.acquire(100)
        await rate.acquire(1200)  # waits until the bucket is full again, then takes it all
        assert fake.now == pytest.approx(1010.0)
        await rate.acquire(0)  # pays off the 600-token debt: 60 s
        assert fake.now == pytest.approx(1070.0)

    asyncio.run(main())


def test_both_budgets_apply():
    rate, fake = limiter(rpm=120, tpm=600)

    async def main():
        await rate.acquire(600)
        await rate.acquire(10)  # tokens are the tighter budget: 1 s

    asyncio.run(main())
    assert fake.now == pytest.approx(1001.0)


def test_concurrent_waiters_are_served_in_arrival_order():
    rate, fake = limiter(rpm=60)
    served: list[int] = []

    async def worker(index: int) -> None:
        await rate.acquire()
        served.append(index)

    async def main():
        for _ in range(60):
            await rate.acquire()
        await asyncio.gather(*(worker(i) for i in range(20)))

    asyncio.run(main())
    assert served == list(range(20))
    assert fake.now == pytest.approx(1020.0)


def test_real_clock_paces_requests():
    rate = RateLimiter(rpm=600)  # one every 0.1 s after the burst

    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(600):
            await rate.acquire()
        start = loop.time()
        for _ in range(3):
            await rate.acquire()
        return loop.time() - start

    assert 0.25 <= asyncio.run(main()) < 1.0


@pytest.mark.parametrize("kwargs", [{"rpm": 0}, {"tpm": -5}])
def test_budgets_must_be_positive(kwargs):
    with pytest.raises(ValueError, match="must be a positive number"):
        RateLimiter(**kwargs)
