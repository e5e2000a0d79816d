"""The rate limiter spaces requests evenly, across threads."""

from __future__ import annotations

import math
import threading

import pytest

from airflow_provider_aidol.client.ratelimit import AdaptiveRateLimiter, RateLimiter


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


class SteppingClock(FakeClock):
    """A fake clock whose sleep moves time on, as a real sleep would."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.now += seconds


def adaptive(clock: FakeClock, **kwargs) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(clock=clock, sleep=clock.sleep, **kwargs)


def pace(limiter: RateLimiter) -> float:
    assert limiter.rate is not None
    return limiter.rate


def rate_limited_after(limiter: AdaptiveRateLimiter, clock: FakeClock, granted: int, seconds: float) -> None:
    """``granted`` requests granted evenly over ``seconds``, then one rate-limit answer."""
    limiter.acquire()
    for _ in range(granted):
        clock.now += seconds / granted
        limiter.on_granted()
    limiter.on_rate_limited()


def test_adaptive_limiter_is_unpaced_until_rate_limited():
    clock = SteppingClock()
    limiter = adaptive(clock)
    for _ in range(100):
        limiter.acquire()
        limiter.on_granted()
    assert limiter.rate is None
    assert clock.slept == []


def test_first_rate_limit_sets_the_recently_granted_rate_times_decrease():
    clock = SteppingClock()
    limiter = adaptive(clock, window=1.0, decrease=0.8)
    rate_limited_after(limiter, clock, granted=20, seconds=1.0)
    assert limiter.rate == pytest.approx(16.0)


def test_after_the_first_rate_limit_the_pace_grows_by_e_every_probe_time():
    clock = SteppingClock()
    limiter = adaptive(clock, decrease=1.0, probe_time=0.25)
    rate_limited_after(limiter, clock, granted=10, seconds=1.0)
    clock.now += 0.25
    limiter.on_granted()
    assert limiter.rate == pytest.approx(10.0 * math.e)


def test_a_second_rate_limit_ends_the_probe_then_the_pace_grows_by_increase_per_second():
    clock = SteppingClock()
    limiter = adaptive(clock, decrease=0.5, increase=2.0)
    rate_limited_after(limiter, clock, granted=20, seconds=1.0)
    limiter.acquire()
    probed = pace(limiter)
    limiter.on_rate_limited()
    assert limiter.rate == pytest.approx(probed / 2)
    clock.now += 0.5
    limiter.on_granted()
    assert limiter.rate == pytest.approx(probed / 2 + 1.0)
    clock.now += 1.0
    limiter.on_granted()
    assert limiter.rate == pytest.approx(probed / 2 + 3.0)


def test_increase_is_at_most_the_pace_itself_per_second():
    clock = SteppingClock()
    limiter = adaptive(clock, decrease=0.5, increase=5.0, min_rate=1.0, probe_time=1e9)
    rate_limited_after(limiter, clock, granted=1, seconds=1.0)  # granted 1/s: the floor, 1/s
    limiter.acquire()
    limiter.on_rate_limited()
    assert limiter.rate == pytest.approx(1.0)
    clock.now += 0.5
    limiter.on_granted()
    assert limiter.rate == pytest.approx(1.5)


def test_a_long_pause_counts_as_one_second_of_increase():
    clock = SteppingClock()
    limiter = adaptive(clock, decrease=0.5, increase=2.0)
    rate_limited_after(limiter, clock, granted=20, seconds=1.0)
    limiter.acquire()
    limiter.on_rate_limited()
    slowed = pace(limiter)
    clock.now += 60
    limiter.on_granted()
    assert limiter.rate == pytest.approx(slowed + 2.0)


def test_rate_limits_of_requests_sent_before_the_last_slow_down_are_not_counted_again():
    clock = SteppingClock()
    limiter = adaptive(clock, decrease=0.5)
    rate_limited_after(limiter, clock, granted=40, seconds=1.0)
    sent, answered = threading.Event(), threading.Event()

    def request_in_flight() -> None:
        limiter.acquire()
        sent.set()
        answered.wait(5)
        limiter.on_rate_limited()

    in_flight = threading.Thread(target=request_in_flight)
    in_flight.start()
    assert sent.wait(5)
    limiter.acquire()
    probed = pace(limiter)
    limiter.on_rate_limited()  # sent at the current pace: slows down
    assert limiter.rate == pytest.approx(probed / 2)
    answered.set()  # the request sent before that slow-down is refused too
    in_flight.join(5)
    assert limiter.rate == pytest.approx(probed / 2)


def test_rate_never_drops_below_the_floor():
    clock = SteppingClock()
    limiter = adaptive(clock, min_rate=2.0)
    limiter.acquire()
    limiter.on_rate_limited()
    assert limiter.rate == 2.0


def test_after_a_slow_down_the_next_request_waits_one_interval():
    clock = SteppingClock()
    limiter = adaptive(clock, decrease=0.5)
    rate_limited_after(limiter, clock, granted=20, seconds=1.0)
    limiter.acquire()
    assert clock.slept == pytest.approx([0.1])


def test_a_faster_pace_reaches_callers_that_are_already_waiting():
    clock = SteppingClock()
    limiter = adaptive(clock, decrease=1.0, min_rate=1.0)
    rate_limited_after(limiter, clock, granted=1, seconds=1.0)  # 1/s
    limiter.acquire()
    limiter.acquire()
    assert clock.slept == pytest.approx([1.0, 1 / math.e**4])  # a second of probing: e**4 faster


@pytest.mark.parametrize("make", [lambda clock: RateLimiter(None, clock=clock, sleep=clock.sleep), adaptive])
def test_retry_after_pauses_every_caller(make):
    clock = SteppingClock()
    limiter = make(clock)
    limiter.on_rate_limited(retry_after=3.0)
    limiter.acquire()
    assert sum(clock.slept) == pytest.approx(3.0, abs=0.01)


class Bucket:
    """The server's token bucket: ``rate`` per second, ``capacity`` at most."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate, self.capacity, self.tokens, self.updated = rate, capacity, float(capacity), 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def share_one_key(senders: int, seconds: float, *, rate: float = 50.0) -> tuple[list[int], int]:
    """Independent limiters, one request in flight each, on one bucket; return grants and refusals.

    Each sender has its own clock that its sleeps move on; requests are answered at once and in
    time order across senders, so the bucket sees what a server would.
    """
    clocks = [SteppingClock() for _ in range(senders)]
    for number, clock in enumerate(clocks):
        clock.now = number * 0.3  # started one after another
    limiters = [adaptive(clock) for clock in clocks]
    bucket = Bucket(rate, 5)
    granted = [0] * senders
    refused = 0
    for _ in range(100_000):
        sender = min(range(senders), key=lambda n: clocks[n].now)
        clock, limiter = clocks[sender], limiters[sender]
        if clock.now >= seconds:
            break
        limiter.acquire()
        if bucket.take(clock.now):
            granted[sender] += 1
            limiter.on_granted()
        else:
            refused += 1
            limiter.on_rate_limited()
        clock.now += 0.002  # the answer's round trip
    return granted, refused


def test_limiters_sharing_a_key_converge_to_equal_shares_and_use_it_fully():
    granted, refused = share_one_key(4, 60.0)
    late = share_one_key(4, 30.0)[0]
    steady = [whole - half for whole, half in zip(granted, late, strict=True)]  # the last 30 s
    assert max(steady) / min(steady) < 1.25
    assert sum(steady) / 30.0 > 0.85 * 50.0
    assert refused / (sum(granted) + refused) < 0.10


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
