import pytest

from evolens import AtSteps, Every, InputError, LogSpaced
from evolens.capture import as_schedule


def test_every():
    schedule = Every(5, start=2)
    assert [s for s in range(20) if schedule(s)] == [2, 7, 12, 17] == schedule.steps_until(19)


def test_log_spaced_known_values():
    assert LogSpaced(per_decade=4).steps_until(1000) == [0, 1, 2, 3, 6, 10, 18, 32, 56, 100, 178, 316, 562, 1000]


@pytest.mark.parametrize("per_decade", [1, 3, 8, 20], ids=lambda k: f"per_decade={k}")
def test_log_spaced_predicate_agrees_with_enumeration(per_decade):
    schedule = LogSpaced(per_decade=per_decade)
    assert [s for s in range(100_001) if schedule(s)] == schedule.steps_until(100_000)


def test_at_steps():
    schedule = AtSteps([30, 0, 7, 7])
    assert schedule.steps_until(100) == [0, 7, 30] and schedule(7) and not schedule(8)


@pytest.mark.parametrize(
    "every, expected",
    [(10, Every(10)), ([1, 5], AtSteps([1, 5])), ("log", LogSpaced()), (range(0, 9, 3), AtSteps([0, 3, 6]))],
    ids=["int", "list", "log", "range"],
)
def test_as_schedule(every, expected):
    assert as_schedule(every) == expected


@pytest.mark.parametrize(
    "every, match",
    [(0, "positive integer"), (-3, "positive integer"), (2.5, "received float"), ("daily", "'daily'"),
     ([], "at least one step"), ([3, -1], "non-negative"), (True, "received bool")],
    ids=["zero", "negative", "float", "word", "empty-list", "negative-step", "bool"],
)
def test_bad_schedules(every, match):
    with pytest.raises(InputError, match=match):
        as_schedule(every)
