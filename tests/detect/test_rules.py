"""Rules on synthetic series, and the Monitor acting on them: alert, pause, resume with an intervention."""

import numpy as np
import pytest
import torch

import evolens
from evolens import InputError, Monitor, Probes
from evolens.detect import Threshold, Trend


def test_threshold_fires_at_the_crossing():
    rule = Threshold("attr/preservation", below=0.8)
    steps = np.arange(0, 60, 10)
    values = np.array([0.95, 0.93, 0.9, 0.75, 0.6, 0.5])
    fired = [rule.check(steps[: i + 1], values[: i + 1]) for i in range(len(steps))]
    assert [a.step for a in fired if a] == [30, 40, 50]  # the Monitor records only the first (once per run)
    assert fired[3].value == 0.75 and "below 0.8" in fired[3].message


def test_min_step_ignores_warm_up():
    rule = Threshold("attr/preservation", below=0.5, min_step=100)
    assert rule.check([0, 50], [0.0, 0.9]) is None  # the untrained model at step 0 does not count
    assert rule.check([0, 50, 100], [0.0, 0.9, 0.4]).step == 100
    with pytest.raises(InputError, match="min_step"):
        Threshold("m", above=1, min_step=-1)


def test_trend_needs_a_sustained_move_not_noise():
    rng = np.random.default_rng(0)
    steps = np.arange(20)
    noisy = 1.0 + 0.01 * rng.standard_normal(20)
    rule = Trend("quality/fid", direction="up", snapshots=4, min_change=0.1)
    assert all(rule.check(steps[: i + 1], noisy[: i + 1]) is None for i in range(20))
    rising = np.concatenate([np.full(10, 1.0), 1.0 + 0.05 * np.arange(1, 11)])
    hits = [i for i in range(20) if rule.check(steps[: i + 1], rising[: i + 1])]
    assert hits[0] == 12  # 4 increasing snapshots (10..13 would be 1.05..1.20); first at 1.0 -> 1.15 >= 0.1


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Threshold("m"), "exactly one"),
        (lambda: Threshold("m", above=1, below=0), "exactly one"),
        (lambda: Trend("m", direction="sideways"), "direction"),
        (lambda: Trend("m", snapshots=1), "snapshots"),
        (lambda: Threshold("", above=1), "metric"),
    ],
    ids=["none", "both", "direction", "window", "metric"],
)
def test_rule_errors(build, match):
    with pytest.raises(InputError, match=match):
        build()


def run_with_rules(tmp_path, rules, on_alert="log", steps=range(8), preservation=None, checkpoint=None):
    preservation = preservation or {0: 0.95, 2: 0.9, 4: 0.7, 6: 0.6}
    hook = lambda monitor, step, arrays: {"attr/preservation": preservation.get(step, 0.5)}  # noqa: E731
    monitor = Monitor(tmp_path / "run", lambda p: p.noise.reshape(4, 1, 2, 2), every=2,
                      probes=Probes.from_noise(4, 4), on_snapshot=[hook], rules=rules, on_alert=on_alert,
                      checkpoint=checkpoint)
    results = []
    for step in steps:
        result = monitor.step(step)
        results.append(result)
        if result.should_pause:
            break
    return monitor, results


def test_monitor_pauses_at_the_flagged_snapshot_and_resumes_one_run(tmp_path):
    def checkpoint(step):
        path = tmp_path / f"ckpt{step}.pt"
        torch.save({"step": step}, path)
        return path

    rule = Threshold("attr/preservation", below=0.8, pause=True)
    monitor, results = run_with_rules(tmp_path, [rule], checkpoint=checkpoint)
    assert results[-1].step == 4 and results[-1].should_pause
    assert [a.step for r in results for a in r.alerts] == [4]
    monitor.close()
    # Resume from the checkpoint with augmented data: same run, intervention on the timeline, no second alert.
    state = torch.load(tmp_path / "ckpt4.pt")
    monitor, results = run_with_rules(tmp_path, [rule], steps=range(state["step"] + 1, 10))
    monitor.record_intervention("added 500 thick 6s", added=500, what="thick 6")
    monitor.step(10)
    monitor.close()
    run = evolens.open_run(tmp_path / "run")
    assert run.steps().tolist() == [0, 2, 4, 6, 8, 10]
    assert all(not r.alerts for r in results)
    kinds = [e.kind for e in run.events()]
    assert kinds.count("alert:threshold:attr/preservation") == 1 and "pause" in kinds and "resume" in kinds
    (alert,) = run.events(level="alert")
    assert alert.step == 4 and alert.data["checkpoint"].endswith("ckpt4.pt")
    (intervention,) = run.events(kind="intervention")
    assert intervention.data == {"added": 500, "what": "thick 6"}
    assert run.scalars("attr/preservation")[0].tolist() == [0, 2, 4, 6, 8, 10]


def test_log_action_and_callback(tmp_path):
    seen = []
    rule = Trend("attr/preservation", direction="down", snapshots=3, min_change=0.1)
    monitor, results = run_with_rules(tmp_path, [rule], on_alert=lambda m, alert: seen.append(alert.step))
    assert seen == [4] and not any(r.should_pause for r in results)
    monitor.close()


def test_monitor_rejects_bad_rule_arguments(tmp_path):
    with pytest.raises(InputError, match="rules: expected evolens.detect rules"):
        Monitor(tmp_path / "a", lambda p: p.noise, rules=["fid > 10"])
    with pytest.raises(InputError, match="on_alert"):
        Monitor(tmp_path / "b", lambda p: p.noise, on_alert="email")
    with pytest.raises(InputError, match="distinct rule names"):
        Monitor(tmp_path / "c", lambda p: p.noise, rules=[Threshold("m", above=1), Threshold("m", above=2)])
