"""decisionlog.timestamp: the decision log's `time`, the same text datetime.isoformat gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from router.server.decisionlog import timestamp


@pytest.mark.parametrize(
    "now",
    [
        0.0,
        1.9996,  # rounds to 1.999600 s: 999 ms, not 1.000
        1763710657.027,  # 0.02699995 as a float: rounded to µs first, 027 ms
        1763710657.9999996,  # rounds up into the next second
        1763710657.0,
        4102444799.999,  # 2099-12-31T23:59:59.999
    ],
)
def test_timestamp_is_isoformat_milliseconds(now: float) -> None:
    assert timestamp(now) == datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")


def test_timestamp_agrees_with_datetime_on_random_instants() -> None:
    rng = random.Random(7)
    instants = [rng.uniform(0, 4e9) for _ in range(20_000)]
    instants += [rng.randrange(4 * 10**9) + rng.randrange(1000) / 1000 for _ in range(20_000)]
    instants.sort()  # consecutive instants in the same second use the cached seconds text
    wrong = [
        t
        for t in instants
        if timestamp(t) != datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    ]
    assert wrong == []
