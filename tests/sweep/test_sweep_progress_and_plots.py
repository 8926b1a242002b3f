"""What a sweep tells while it runs (trial i/N), what its preset trains, and what its plots may claim."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from empdg.config import compose
from empdg.sweep.objective import TrialObjective, trial_label
from empdg.sweep.pruning import Objective
from empdg.sweep.report import history_points, plot_history, plot_importances, write_plots
from empdg.sweep.runner import SweepConfigError, prepare
from empdg.sweep.space import parse_space
from empdg.training.settings import validate_config

matplotlib.use("Agg")

SPACE = {"lr": {"key": "optim.lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


# -- trial i/N -------------------------------------------------------------------------------------------
def test_trial_label_counts_this_commands_trials():
    assert trial_label(0, first_trial=0, n_trials=10) == "trial 1/10"
    assert trial_label(12, first_trial=10, n_trials=3) == "trial 3/3 (study trial 12)"  # a resumed study
    assert trial_label(14, first_trial=10, n_trials=3) == "study trial 14"  # another command's share


def test_each_trial_prints_trial_i_of_n_when_it_starts_and_ends(monkeypatch, capsys, tmp_path):
    outcomes = iter([{"val/ppl": 12.5}, RuntimeError("out of luck")])

    def fake_training(cfg, extra_callbacks=None):  # the trial's training, without training
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr("empdg.training.run.run_training", fake_training)
    objective = TrialObjective(
        ["experiment=quickstart", "logger=none"], parse_space(SPACE), Objective("val/ppl"), tmp_path, None,
        first_trial=3, n_trials=2,
    )  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for number in range(3):  # three earlier trials: this command's first is the study's trial 3
        lr = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}
        study.add_trial(create_trial(params={"lr": 1e-3}, distributions=lr, value=20.0 + number))
    study.optimize(objective, n_trials=2, catch=(Exception,))
    lines = [line for line in capsys.readouterr().out.splitlines() if "trial" in line]
    assert lines[0].startswith("trial 1/2 (study trial 3) started: lr=")
    assert lines[1].startswith("trial 1/2 (study trial 3) COMPLETE after ") and lines[1].endswith(": val/ppl=12.5")
    assert lines[2].startswith("trial 2/2 (study trial 4) started: lr=")
    assert lines[3].startswith("trial 2/2 (study trial 4) FAIL after ") and "RuntimeError: out of luck" in lines[3]


# -- the quickstart preset -------------------------------------------------------------------------------
def test_the_quickstart_preset_trains_the_critics(tmp_path: Path):
    overrides = ["sweep=quickstart", f"paths.root_dir={tmp_path}", "logger=none"]
    plan, base_cfg = prepare(compose("sweep_root", overrides), overrides, tmp_path / "sweep")
    phases = base_cfg.training.phases
    assert phases.generator_pretrain > 0 and phases.critic_pretrain > 0 and phases.adversarial > 0
    assert list(base_cfg.adversarial.critics) == ["semantic", "emotion"]
    validate_config(base_cfg)


def test_importance_min_trials_below_two_is_refused(tmp_path: Path):
    overrides = ["sweep=quickstart", "sweep.importance_min_trials=1", f"paths.root_dir={tmp_path}"]
    with pytest.raises(SweepConfigError, match=r"sweep.importance_min_trials=1: use an integer >= 2"):
        prepare(compose("sweep_root", overrides), overrides, tmp_path / "sweep")


# -- the plots -------------------------------------------------------------------------------------------
def _distributions() -> dict:
    return {"lr": FloatDistribution(1e-4, 1e-2, log=True), "dropout": FloatDistribution(0.0, 0.3)}


def study_of(*trials: tuple) -> optuna.Study:
    """Trials as (state, value or intermediate values); parameters differ so importances have something to rank."""
    study = optuna.create_study(study_name="plots")
    for number, (state, result) in enumerate(trials):
        params = {"lr": 1e-4 * (1.5**number), "dropout": 0.03 * number}
        if state == TrialState.PRUNED:
            trial = create_trial(state=state, params=params, distributions=_distributions(), intermediate_values=result)
        elif state == TrialState.FAIL:
            trial = create_trial(state=state, params=params, distributions=_distributions())
        else:
            trial = create_trial(params=params, distributions=_distributions(), value=result)
        study.add_trial(trial)
    return study


COMPLETE, PRUNED, FAIL = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL


def test_history_keeps_pruned_trials_at_their_last_reported_value():
    study = study_of((COMPLETE, 30.0), (PRUNED, {10: 50.0, 20: 45.0}), (COMPLETE, 20.0), (FAIL, None), (COMPLETE, 25.0))
    points = history_points(study)
    assert points["complete"] == [(0, 30.0), (2, 20.0), (4, 25.0)]
    assert points["best"] == [(0, 30.0), (2, 20.0), (4, 20.0)]  # minimize: the best so far
    assert points["pruned"] == [(1, 45.0)]
    assert points["failed"] == [3]


def test_history_plot_has_whole_trial_numbers_and_marks_pruned_trials():
    study = study_of((COMPLETE, 30.0), (PRUNED, {10: 45.0}), (COMPLETE, 20.0))
    figure = plot_history(study, "val/ppl")
    axis = figure.axes[0]
    figure.canvas.draw()
    ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
    assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
    pruned = [line for line in axis.get_lines() if line.get_label() == "pruned (last reported value)"]
    assert len(pruned) == 1 and list(pruned[0].get_xdata()) == [1] and list(pruned[0].get_ydata()) == [45.0]
    assert "2 complete, 1 pruned" in axis.get_title()


def test_importances_are_skipped_below_the_minimum_and_say_how_many_trials_they_rest_on(tmp_path, capsys):
    four = study_of(*[(COMPLETE, 30.0 - n) for n in range(4)], (PRUNED, {10: 50.0}))
    assert plot_importances(four, min_trials=5) is None
    assert [p.name for p in write_plots(four, tmp_path, "val/ppl", importance_min_trials=5)] == [
        "optimization_history.png"
    ]
    assert "need >= 5 complete trials (sweep.importance_min_trials; have 4)" in capsys.readouterr().out
    six = study_of(*[(COMPLETE, 30.0 - n) for n in range(6)])
    figure = plot_importances(six, min_trials=5)
    assert "from 6 complete trials" in figure.axes[0].get_title()
    written = write_plots(six, tmp_path, "val/ppl", importance_min_trials=5)
    assert [p.name for p in written] == ["optimization_history.png", "param_importances.png"]
