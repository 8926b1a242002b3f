"""Log hygiene: a run and its exact resume print none of the known noise of Lightning and torch; other warnings,
and the sync_dist advice for keys that are not reports, still show."""

from __future__ import annotations

import logging
import warnings

import pytest
import pytorch_lightning as pl
import torch
from tiny import MLE_ONLY

from empdg.training.run import run_training

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
                *MLE_ONLY,
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
        report = ("wgan/critic/sem_score_gold", "wgan/critic/n_emotional", "val/greedy_dist_1", "val/sim_context",
                  "val/reply_emotion_acc", "val/reply_emotion_acc_gold")  # fmt: skip
        for key in (*report, "train/mine"):
            warnings.warn(advice(key), PossibleUserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [advice("train/mine")]
