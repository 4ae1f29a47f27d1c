"""The burst-end linger of outbox.drainer.wakeup, on a clock the test turns (no database):
after a burst a drainer keeps claiming for one notify window before it sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outbox.drainer.config import BURST_END_LINGER
from outbox.drainer.wakeup import Wakeup
from outbox.triggers import NOTIFY_WINDOW_MS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wakeup(clock: Clock) -> Iterator[Wakeup]:
    w = Wakeup("test", listen=False, connect_params=dict, clock=clock)
    try:
        yield w
    finally:
        w.close()


def test_the_linger_is_one_notify_window() -> None:
    assert BURST_END_LINGER == NOTIFY_WINDOW_MS / 1000


def test_an_empty_claim_after_a_burst_lingers_one_window_from_then(wakeup: Wakeup, clock: Clock) -> None:
    wakeup.claimed(5)
    clock.now += 3.0  # processing the burst took long: the linger starts at the empty claim
    wakeup.claimed(0)
    clock.now += BURST_END_LINGER * 0.9
    assert wakeup.lingering()
    wakeup.claimed(0)  # empty claims while lingering do not extend it
    clock.now += BURST_END_LINGER * 0.2
    assert not wakeup.lingering()


def test_empty_claims_without_a_burst_never_linger(wakeup: Wakeup, clock: Clock) -> None:
    assert not wakeup.lingering()
    for _ in range(5):
        wakeup.claimed(0)  # a NOTIFY flood, a poll: nothing found
        assert not wakeup.lingering()
        clock.now += 0.01


def test_a_new_burst_lingers_again(wakeup: Wakeup, clock: Clock) -> None:
    wakeup.claimed(1)
    wakeup.claimed(0)
    clock.now += BURST_END_LINGER * 2
    assert not wakeup.lingering()
    wakeup.claimed(2)
    wakeup.claimed(0)
    assert wakeup.lingering()
