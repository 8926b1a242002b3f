"""Hardening of train.py: safe and checked resumes, early config errors, quiet logs, progress lines."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from empdg.training.run import run_training, validate_config

MLE = ("training.phases.critic_pretrain=0", "training.phases.adversarial=0")


def run_dir_checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))


# -- a resume never unpickles code ------------------------------------------------------------------
class WritesMarker:
    """Unpickling this runs code: it writes ``marker`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"vocab_tokens": ["a"]}, "global_step": 1, "x": WritesMarker(marker)},
        path,
    )
    return path


def test_resume_from_a_malicious_checkpoint_runs_nothing(compose_train, tmp_path, monkeypatch):
    # an environment (or an older torch) where an unpinned torch.load unpickles anything
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned.txt"
    ckpt = malicious_checkpoint(tmp_path / "shared.ckpt", marker)
    cfg = compose_train(*MLE, "training.phases.generator_pretrain=2", f"ckpt_path={ckpt}")
    with pytest.raises(ValueError) as error:
        run_training(cfg)
    message = str(error.value)
    assert "ckpt_path=" in message and "unsafe" in message and "not an empdg checkpoint" in message
    assert not marker.exists(), "unpickling the checkpoint ran code"
    assert not (tmp_path / ".cache").exists(), "data was read before the checkpoint was checked"


def test_model_init_from_a_malicious_checkpoint_runs_nothing(compose_train, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned.txt"
    ckpt = malicious_checkpoint(tmp_path / "shared.ckpt", marker)
    cfg = compose_train(*MLE, "training.phases.generator_pretrain=2", f"model.init_from={ckpt}")
    with pytest.raises(ValueError, match=r"model\.init_from=.*unsafe"):
        run_training(cfg)
    assert not marker.exists()


# -- impossible adversarial settings stop before any data is read -------------------------------------
@pytest.mark.parametrize(
    ("overrides", "key", "why"),
    [
        (("adversarial.n_critic=0", "adversarial.g_steps=0"), "adversarial.n_critic + adversarial.g_steps", "end"),
        (("adversarial.n_critic=0",), "adversarial.n_critic=0", "critics\\s+would never be trained"),
        (("adversarial.g_steps=-1",), "adversarial.g_steps=-1", ">= 0"),
        (("adversarial.n_critic=-2",), "adversarial.n_critic=-2", ">= 0"),
        (("adversarial.gp_lambda=-1.0",), "adversarial.gp_lambda=-1.0", ">= 0"),
        (("adversarial.w_adv=-0.5",), "adversarial.w_adv=-0.5", ">= 0"),
        (("training.phases.critic_pretrain=-3",), "training.phases.critic_pretrain=-3", ">= 0"),
        (("training.phases.adversarial=-1",), "training.phases.adversarial=-1", ">= 0"),
        (("callbacks.progress.every_n_steps=-1",), "callbacks.progress.every_n_steps=-1", ">= 0"),
    ],
)
def test_impossible_adversarial_settings_are_rejected_naming_the_key(compose_train, overrides, key, why):
    cfg = compose_train("training.phases.adversarial=3", *overrides)
    with pytest.raises(ValueError, match=re.escape(key) + r".*" + why):
        validate_config(cfg)


def test_n_critic_zero_is_fine_without_critics_or_without_an_adversarial_phase(compose_train):
    validate_config(compose_train("adversarial.n_critic=0", "ablation=no_critics"))
    validate_config(compose_train("adversarial.n_critic=0", "training.phases.adversarial=0"))


def test_rejected_before_any_data_is_read(compose_train, tmp_path):
    cfg = compose_train("training.phases.generator_pretrain=2", "adversarial.gp_lambda=-1")
    with pytest.raises(ValueError, match=r"adversarial\.gp_lambda"):
        run_training(cfg)
    assert not (tmp_path / ".cache").exists()


# -- resuming a checkpoint of another model or vocabulary -------------------------------------------
@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory) -> Path:
    """A finished 2-update run (monitor=null, a checkpoint every update, all kept)."""
    from tiny import tiny_overrides

    from empdg.config import compose

    root = tmp_path_factory.mktemp("resume_source")
    overrides = [
        *tiny_overrides(),
        "logger=none",
        "training.sample_generations=0",
        *MLE,
        "training.phases.generator_pretrain=2",
        "callbacks.checkpoint.monitor=null",
        "callbacks.checkpoint.every_n_train_steps=1",
        "callbacks.checkpoint.save_top_k=-1",
        f"paths.root_dir={root}",
        f"paths.output_dir={root / 'run'}",
    ]
    run_training(compose("train", overrides))
    return root / "run"


def test_checkpoints_without_a_monitor_are_named_by_step(two_step_run):
    names = run_dir_checkpoints(two_step_run)
    assert "last.ckpt" in names
    assert not [n for n in names if n.startswith("best")], names
    assert {"step-1.ckpt", "step-2.ckpt"} <= set(names)


def test_checkpoints_with_a_monitor_are_named_best(compose_train, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="empdg.training.progress")
    run_training(compose_train(*MLE, "training.phases.generator_pretrain=2", "callbacks.progress.every_n_steps=0"))
    names = run_dir_checkpoints(tmp_path / "run")
    assert [n for n in names if n.startswith("best-")], names
    assert not progress_lines(caplog)  # every_n_steps=0 disables the progress lines


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (("model.emb_dim=32", "model.hidden_dim=32"), ["model.emb_dim: checkpoint 16, this run 32", "weights:"]),
        (("model=transformer",), ["model.name: checkpoint 'empdg', this run 'transformer'"]),
        (("data.builtin.train_per_emotion=3",), ["vocabulary: checkpoint", "data.vocab"]),
    ],
)
def test_resume_of_another_model_or_vocabulary_names_what_differs(compose_train, two_step_run, overrides, named):
    ckpt = two_step_run / "checkpoints" / "last.ckpt"
    cfg = compose_train(*MLE, "training.phases.generator_pretrain=4", f"ckpt_path={ckpt}", *overrides)
    with pytest.raises(ValueError) as error:
        run_training(cfg)
    message = str(error.value)
    assert f"ckpt_path={ckpt} cannot be resumed" in message
    for part in named:
        assert part in message, message
    assert "model.init_from" in message  # the fix for "I only want its weights"


# -- log hygiene --------------------------------------------------------------------------------------
NOISE = (
    "dataloader is not resumable",
    "manual optimization and every_n_train_steps",
    "LeafSpec",
    "litlogger",
)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lightning_logs():
    """Every record that reaches Lightning's loggers (they may not propagate to pytest's caplog)."""
    handler = Collect()
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning_fabric", "lightning")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def test_a_run_and_its_exact_resume_print_none_of_the_known_noise(
    compose_train, two_step_run, tmp_path, capfd, caplog, lightning_logs, monkeypatch
):
    fit_kwargs = []
    original_fit = pl.Trainer.fit

    def fit(self, *args, **kwargs):
        fit_kwargs.append(kwargs)
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    caplog.set_level(logging.INFO)
    ckpt = two_step_run / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # an exact resume mid-epoch, checkpointing every update without a monitored metric
        run_training(
            compose_train(
                *MLE,
                "training.phases.generator_pretrain=4",
                f"ckpt_path={ckpt}",
                "callbacks.checkpoint.monitor=null",
                "callbacks.checkpoint.every_n_train_steps=1",
            )
        )
    out, err = capfd.readouterr()
    text = "\n".join([out, err, caplog.text, *lightning_logs.lines, *(str(w.message) for w in caught)])
    for noise in NOISE:
        assert noise not in text, f"{noise!r} was printed:\n{text[-3000:]}"
    assert fit_kwargs and fit_kwargs[0].get("weights_only") is True  # the resume is pinned safe
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_other_warnings_still_show(compose_train):
    from empdg.training.log_hygiene import install_log_filters

    install_log_filters()
    with pytest.warns(UserWarning, match="something else"):
        warnings.warn("something else about every_n_train_steps", UserWarning, stacklevel=1)
    with pytest.warns(FutureWarning, match="LeafSpec is gone"):
        warnings.warn("LeafSpec is gone", FutureWarning, stacklevel=1)


# -- progress without a progress bar -----------------------------------------------------------------
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


def test_ddp_validation_report_keys_print_no_sync_dist_warning_but_others_do():
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    from empdg.training.log_hygiene import install_log_filters

    def advice(key: str) -> str:
        return (
            f"It is recommended to use `self.log({key!r}, ..., sync_dist=True)` when logging on epoch level in "
            "distributed setting to accumulate the metric across devices."
        )

    with warnings.catch_warnings(record=True) as caught:
        install_log_filters()
        for key in ("wgan/critic/sem_score_gold", "wgan/critic/n_emotional", "val/greedy_dist_1", "train/mine"):
            warnings.warn(advice(key), PossibleUserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [advice("train/mine")]
