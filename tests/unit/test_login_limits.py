"""Slowing down password guessing, and the limits per user, on a clock of the test's own."""

from __future__ import annotations

import pytest

from psyche_sse.config import Settings
from psyche_sse.web.auth import LOCAL_USER, User
from psyche_sse.web.errors import HTTPError
from psyche_sse.web.limits import RoundLimits
from psyche_sse.web.login import (
    FIRST_DELAY_SECONDS,
    FREE_FAILURES,
    MAX_DELAY_SECONDS,
    WINDOW_SECONDS,
    LoginThrottle,
    safe_next,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ADDRESS = ("address", "192.0.2.7")
USER = ("user", "bob")


def test_the_wait_after_the_free_failures_doubles_with_each_failure() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(FREE_FAILURES - 1):
        throttle.failed([ADDRESS, USER])
    assert throttle.retry_after([ADDRESS]) == 0
    waits = []
    for _ in range(4):
        throttle.failed([ADDRESS, USER])
        waits.append(throttle.retry_after([ADDRESS]))
    assert waits == [FIRST_DELAY_SECONDS * 2**n for n in range(4)]
    for _ in range(10):
        throttle.failed([ADDRESS])
    assert throttle.retry_after([ADDRESS]) == MAX_DELAY_SECONDS
    clock.now += MAX_DELAY_SECONDS
    assert throttle.retry_after([ADDRESS]) == 0


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(FREE_FAILURES - 1):
        throttle.failed([USER])
    clock.now += WINDOW_SECONDS
    throttle.failed([USER])
    assert throttle.retry_after([USER]) == 0


def test_a_success_clears_only_its_own_key() -> None:
    throttle = LoginThrottle(clock=Clock())
    other = ("address", "192.0.2.8")
    for _ in range(FREE_FAILURES):
        throttle.failed([ADDRESS, USER])
        throttle.failed([other])
    throttle.succeeded(other)
    assert throttle.retry_after([other]) == 0
    assert throttle.retry_after([ADDRESS]) > 0 and throttle.retry_after([USER]) > 0


@pytest.mark.parametrize(
    ("asked", "lands"),
    [
        ("/s/abc", "/s/abc"),
        ("/sessions?page=2", "/sessions?page=2"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/login", "/"),
        ("/a\nb", "/"),
        (None, "/"),
    ],
)
def test_login_sends_back_only_to_this_site(asked: object, lands: str) -> None:
    assert safe_next(asked) == lands


BOB = User(id=2, name="bob", admin=False)


def test_runs_started_per_minute_are_limited_and_say_when_to_retry() -> None:
    clock = Clock()
    limits = RoundLimits(Settings(user_rounds_per_minute=2, user_running_rounds=0), clock)
    for _ in range(2):
        limits.check(BOB, running=0)
        limits.started(BOB)
        clock.now += 10
    with pytest.raises(HTTPError) as refused:
        limits.check(BOB, running=0)
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "40"
    clock.now += 40
    limits.check(BOB, running=0)


def test_rounds_at_once_are_limited_and_the_local_user_is_not() -> None:
    limits = RoundLimits(Settings(user_rounds_per_minute=1, user_running_rounds=1), Clock())
    with pytest.raises(HTTPError, match="at once") as refused:
        limits.check(BOB, running=1)
    assert refused.value.headers["Retry-After"].isdigit()
    for _ in range(5):
        limits.check(LOCAL_USER, running=10)
        limits.started(LOCAL_USER)
