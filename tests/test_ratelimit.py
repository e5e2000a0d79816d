"""The rate limiter spaces requests evenly, across threads."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_aidol.ratelimit import AdaptiveRateLimiter, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)


def test_requests_are_spaced_by_one_over_rate():
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        limiter.acquire()
    assert clock.slept == pytest.approx([0.25, 0.5, 0.75])


def test_idle_time_is_not_banked_as_a_burst():
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 10
    limiter.acquire()
    limiter.acquire()
    assert clock.slept == pytest.approx([0.5])


def test_threads_get_distinct_slots():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(clock.slept) == pytest.approx([n / 10 for n in range(1, 20)])


@pytest.mark.parametrize("rate", [0, -1.0])
def test_rate_must_be_positive(rate):
    with pytest.raises(ValueError, match="rate must be"):
        RateLimiter(rate)


# --- adaptive ------------------------------------------------------------------------------


def adaptive(clock: FakeClock, **kwargs) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(clock=clock, sleep=clock.sleep, **kwargs)


def test_adaptive_limiter_is_unpaced_until_rate_limited():
    clock = FakeClock()
    limiter = adaptive(clock)
    for _ in range(100):
        limiter.acquire()
        limiter.on_granted()
    assert limiter.rate is None
    assert clock.slept == []


def test_rate_limit_slows_to_the_recently_granted_rate():
    clock = FakeClock()
    limiter = adaptive(clock, window=1.0, backoff=1.0)
    limiter.acquire()
    for _ in range(20):  # 20 granted over the last second
        clock.now += 0.05
        limiter.on_granted()
    limiter.on_rate_limited()
    assert limiter.rate == pytest.approx(20.0)


def test_pace_probes_upward_after_a_quiet_interval():
    clock = FakeClock()
    limiter = adaptive(clock, window=1.0, backoff=1.0, probe_interval=0.5, probe_step=1.1)
    limiter.acquire()
    for _ in range(10):
        clock.now += 0.1
        limiter.on_granted()
    limiter.on_rate_limited()
    assert limiter.rate == pytest.approx(10.0)
    clock.now += 0.4
    limiter.on_granted()
    assert limiter.rate == pytest.approx(10.0)
    clock.now += 0.2
    limiter.on_granted()
    assert limiter.rate == pytest.approx(11.0)


def test_rate_never_drops_below_the_floor():
    clock = FakeClock()
    limiter = adaptive(clock, min_rate=2.0)
    limiter.acquire()
    limiter.on_rate_limited()
    assert limiter.rate == 2.0


def test_retry_after_pauses_every_caller():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.on_rate_limited(retry_after=3.0)
    limiter.acquire()
    assert clock.slept == [3.0]


def test_a_retry_after_pause_is_capped_and_returned():
    clock = FakeClock()
    limiter = RateLimiter(None, max_pause=2.0, clock=clock, sleep=clock.sleep)
    assert limiter.on_rate_limited(retry_after=1e9) == 2.0
    limiter.acquire()
    assert clock.slept == [2.0]


@pytest.mark.parametrize("retry_after", [float("inf"), float("nan"), -3.0, None, 0])
def test_a_retry_after_that_is_not_a_time_pauses_nobody(retry_after):
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    assert limiter.on_rate_limited(retry_after=retry_after) == 0.0
    limiter.acquire()
    assert clock.slept == []


def test_the_adaptive_limiter_caps_pauses_too():
    clock = FakeClock()
    limiter = adaptive(clock, max_pause=1.5)
    limiter.acquire()
    assert limiter.on_rate_limited(retry_after=float("1e300")) == pytest.approx(1.5)


@pytest.mark.parametrize("rate", [1e-300, 1e-6])
def test_a_rate_too_slow_for_any_sleep_is_refused(rate):
    with pytest.raises(ValueError, match="rate must be at least 1/86400"):
        RateLimiter(rate)
