"""Progress follows the phases: update i/N of the phase and of the run, an ETA from each kind of update's own
measured speed, bars that show the phase instead of Lightning's epochs, and progress lines every N updates
where there is no bar."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest

from empdg.training.phases import PhaseSchedule
from empdg.training.progress import (
    ADVERSARIAL_GENERATOR,
    CRITIC,
    GENERATOR,
    Eta,
    PhaseTimer,
    PhaseTracker,
    RunPosition,
)
from empdg.training.progress_bar import PhaseRichProgressBar, PhaseTQDMProgressBar
from empdg.training.run import run_training

BUDGETS = {"generator_pretrain": 100, "critic_pretrain": 20, "adversarial": 10}  # adversarial: cycles


def position(done: dict[str, int], cycle_position: int = 0) -> RunPosition:
    return RunPosition(BUDGETS, done, n_critic=1, g_steps=5, cycle_position=cycle_position)


# -- counting updates ----------------------------------------------------------------------------------
def test_phase_and_run_updates_count_every_update_of_an_adversarial_cycle():
    # 3 cycles done and 2 updates (1 critic, 1 generator) into the 4th: 3 * 6 + 2 = 20 of 60
    at = position({"generator_pretrain": 100, "critic_pretrain": 20, "adversarial": 3}, cycle_position=2)
    assert at.current == "adversarial"
    assert (at.phase_done("adversarial"), at.phase_total("adversarial")) == (20, 60)
    assert (at.run_done, at.run_total) == (140, 180)
    assert at.remaining("adversarial") == {CRITIC: 7 - 1, ADVERSARIAL_GENERATOR: 35 - 1}
    assert at.next_kind() == ADVERSARIAL_GENERATOR


# -- the ETA rule --------------------------------------------------------------------------------------
def timer(**seconds_per_update: float) -> PhaseTimer:
    timed = PhaseTimer()
    for kind, cost in seconds_per_update.items():
        timed.record("any", kind, 4 * cost, updates=4)
    return timed


def test_eta_of_the_phase_uses_its_speed_and_the_run_waits_for_an_untimed_phase():
    # generator pre-training at 0.1 s an update, 60 left: 6 s; nobody has timed a critic update yet
    eta = timer(generator=0.1).eta(position({"generator_pretrain": 40}))
    assert eta == Eta(phase=pytest.approx(6.0), run=None, waiting_for="critic_pretrain")
    assert eta.text() == "ETA phase 6s, run after critic_pretrain starts"


def test_eta_in_critic_pretraining_waits_for_the_adversarial_generator_updates():
    # 10 critic updates left at 0.5 s = 5 s; the adversarial phase's critic updates are priced, its generator ones not
    eta = timer(generator=0.1, critic=0.5).eta(position({"generator_pretrain": 100, "critic_pretrain": 10}))
    assert eta == Eta(phase=pytest.approx(5.0), run=None, waiting_for="adversarial")


def test_eta_prices_each_kind_of_update_at_its_own_speed():
    # left in the adversarial phase: 6 critic updates at 0.5 s + 34 generator updates at 2 s = 3 + 68 = 71 s,
    # where the phase's average (40 left at one speed) would say anything between 20 s and 80 s
    at = position({"generator_pretrain": 100, "critic_pretrain": 20, "adversarial": 3}, cycle_position=2)
    eta = timer(generator=0.1, critic=0.5, adversarial_generator=2.0).eta(at)
    assert eta.phase == pytest.approx(71.0) and eta.run == pytest.approx(71.0)
    assert eta.text() == "ETA phase 1m11s, run 1m11s"


def test_eta_of_the_run_adds_the_later_phases_at_their_speeds():
    # 60 generator updates * 0.1 + 20 critic * 0.5 + 10 cycles * (1 * 0.5 + 5 * 2.0) = 6 + 10 + 105 = 121 s
    eta = timer(generator=0.1, critic=0.5, adversarial_generator=2.0).eta(position({"generator_pretrain": 40}))
    assert eta.phase == pytest.approx(6.0) and eta.run == pytest.approx(121.0)


def test_eta_is_unknown_inside_a_phase_before_its_kind_is_timed():
    at = position({"generator_pretrain": 100, "critic_pretrain": 20}, cycle_position=1)  # first critic update done
    eta = timer(generator=0.1, critic=0.5).eta(at)
    assert eta == Eta(None, None, None) and eta.text() == "ETA phase ?, run ?"


# -- timing a run as it goes -----------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_module(budgets: dict[str, int]) -> SimpleNamespace:
    return SimpleNamespace(
        phases=PhaseSchedule(budgets),
        adv=SimpleNamespace(n_critic=1, g_steps=1),
        counters=SimpleNamespace(cycle_position=0),
    )


def test_the_tracker_times_each_kind_and_a_step_without_update_counts_towards_the_next():
    clock, module = Clock(), fake_module({"generator_pretrain": 3, "critic_pretrain": 2})
    tracker = PhaseTracker(clock)
    tracker.start(module)
    steps = [  # (seconds the step takes, the phase it advances or None: an accumulation micro-batch)
        (1.0, "generator_pretrain"),
        (0.5, None),
        (0.5, "generator_pretrain"),  # this update took 0.5 + 0.5 s
        (1.0, "generator_pretrain"),
        (4.0, "critic_pretrain"),
    ]
    for seconds, advances in steps:
        tracker.batch_start(module)
        clock.now += seconds
        if advances:
            module.phases.advance(advances)
        tracker.batch_end(module)
    assert tracker.timer.seconds_per_update(GENERATOR) == pytest.approx(1.0)
    assert tracker.timer.seconds_per_update(CRITIC) == pytest.approx(4.0)
    status = tracker.status(module)
    assert (status.phase, status.phase_done, status.phase_total, status.run_done, status.run_total) == (
        "critic_pretrain", 1, 2, 4, 5,
    )  # fmt: skip
    assert status.rate == pytest.approx(0.25) and status.eta.text() == "ETA phase 4s, run 4s"


# -- what a run shows ------------------------------------------------------------------------------------
PHASES_OVERRIDES = (
    "training.phases.generator_pretrain=2",
    "training.phases.critic_pretrain=2",
    "training.phases.adversarial=1",
    "adversarial.n_critic=1",
    "adversarial.g_steps=1",
    "logger=none",
    "trainer.enable_progress_bar=true",
)


def test_the_rich_bar_shows_the_phase_and_the_run_not_epochs(compose_train, capsys):
    run_training(compose_train(*PHASES_OVERRIDES))
    output = capsys.readouterr().out
    # budget: 2 generator + 2 critic + 1 cycle of (1 critic + 1 generator) updates; the bar ends on the last phase
    assert re.search(r"adversarial\s.*2/2\s+run update 6/6", output), output[-3000:]
    assert "Epoch" not in output, output[-3000:]


def test_the_tqdm_bar_shows_the_phase_and_the_run_not_epochs(compose_train, capsys, monkeypatch):
    monkeypatch.setattr("empdg.training.run.phase_progress_bar", PhaseTQDMProgressBar)
    run_training(compose_train(*PHASES_OVERRIDES))
    output = capsys.readouterr().out
    lines = re.findall(r"(\w+): +\d+%\|[^|]*\| (\d+)/(\d+) \[[^,\]]*, run update (\d+)/(\d+)", output)
    shown = {(phase, int(done), int(total), int(run_done)) for phase, done, total, run_done, _ in lines}
    assert {("generator_pretrain", 2, 2, 2), ("critic_pretrain", 2, 2, 4), ("adversarial", 2, 2, 6)} <= shown, output
    assert "Epoch" not in output, output[-3000:]


@pytest.mark.parametrize("bar", [PhaseRichProgressBar, PhaseTQDMProgressBar])
def test_the_bars_drop_the_loggers_version_number(bar):
    trainer = SimpleNamespace(loggers=[SimpleNamespace(version=7)], progress_bar_metrics={"train/loss": 1.5})
    assert bar().get_metrics(trainer, None) == {"train/loss": 1.5}  # Lightning's bars add v_num=7


# -- progress lines without a progress bar ----------------------------------------------------------
PROGRESS = re.compile(
    r"progress: (?P<phase>\w+) update (?P<phase_done>\d+)/(?P<phase_total>\d+) \| "
    r"run update (?P<done>\d+)/(?P<total>\d+) \(\d+\.\d%\) \| step \d+ \| (?P<rest>.*)"
)


def progress_lines(caplog) -> list[re.Match]:
    lines = [r.getMessage() for r in caplog.records if r.name == "empdg.training.progress"]
    return [m for m in map(PROGRESS.match, lines) if m]


def test_progress_lines_every_n_updates_over_every_phase(compose_train, caplog):
    caplog.set_level(logging.INFO, logger="empdg.training.progress")
    cfg = compose_train(
        "training.phases.generator_pretrain=2",
        "training.phases.critic_pretrain=2",
        "training.phases.adversarial=1",
        "adversarial.n_critic=1",
        "adversarial.g_steps=1",
        "callbacks.progress.every_n_steps=2",
    )
    assert cfg.trainer.enable_progress_bar is False
    run_training(cfg)
    lines = progress_lines(caplog)
    # budget: 2 generator + 2 critic + 1 cycle of (1 critic + 1 generator) updates
    shown = [(m["phase"], int(m["phase_done"]), int(m["phase_total"]), int(m["done"]), int(m["total"])) for m in lines]
    assert shown == [
        ("generator_pretrain", 2, 2, 2, 6),
        ("critic_pretrain", 2, 2, 4, 6),
        ("adversarial", 2, 2, 6, 6),
    ]
    assert "loss=" in lines[0]["rest"] and "nll=" in lines[0]["rest"]
    assert "d_loss=" in lines[1]["rest"]
    # each phase's first line: the next phase brings a kind of update nobody has timed yet
    etas = [re.search(r"\d+\.\d\d updates/s \| (ETA .*)$", m["rest"])[1] for m in lines]
    assert etas == [
        "ETA phase 0s, run after critic_pretrain starts",
        "ETA phase 0s, run after adversarial starts",
        "ETA phase 0s, run 0s",
    ]
