"""The datamodule stops before any model is built when a split the stage needs is empty, and before any data is
read when a loader setting is impossible (a size, a length, the bucketing key, the normalization)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from empdg.data.datamodule import DialogueDataModule
from empdg.data.errors import DataError

TINY = {"seed": 0, "train_per_emotion": 1, "valid_per_emotion": 1, "test_per_emotion": 1}


def data_config(tmp_path: Path, **overrides) -> dict:
    """conf/data/builtin.yaml's keys, tiny, with the cache in tmp_path."""
    cfg = {
        "name": "builtin", "source": "builtin", "builtin": TINY, "cache_dir": str(tmp_path / "cache"),
        "normalization": "moel", "vocab": {"min_count": 1, "max_size": None}, "max_context_len": 64,
        "max_target_len": 32, "max_emotion_words": 16, "batch_size": 4, "eval_batch_size": 4,
        "num_workers": 0, "bucketing": True, "bucket_size_multiplier": 4, "bucket_by": "context_reply",
        "limit_examples": {},
    }  # fmt: skip
    cfg.update(overrides)
    return cfg


def test_limit_examples_that_empties_valid_stops_fit_setup(tmp_path: Path) -> None:
    cfg = data_config(tmp_path, limit_examples={"valid": 0})
    datamodule = DialogueDataModule(cfg)
    with pytest.raises(DataError, match=r"valid split is empty after data\.limit_examples\.valid=0"):
        datamodule.setup("fit")


def test_limit_examples_on_a_split_the_stage_does_not_read_is_allowed(tmp_path: Path) -> None:
    cfg = data_config(tmp_path, limit_examples={"test": 0})
    datamodule = DialogueDataModule(cfg)
    datamodule.setup("fit")
    assert len(datamodule.datasets["valid"]) > 0
    with pytest.raises(DataError, match=r"test split is empty"):
        DialogueDataModule(cfg, vocab=datamodule.vocab).setup("test")


def test_one_data_cache_line_per_process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="empdg.data")
    cfg = data_config(tmp_path)
    for _ in range(2):  # two runs in one process, as the trials of a sweep
        datamodule = DialogueDataModule(cfg)
        datamodule.prepare_data()  # run_training
        datamodule.setup("fit")
        datamodule.prepare_data()  # trainer.fit
        datamodule.prepare_data()  # trainer.validate
    infos = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    cache_lines = [line for line in infos if "cache miss" in line or "cache hit" in line]
    assert len(cache_lines) == 1 and cache_lines[0].startswith("data: builtin") and "cache miss" in cache_lines[0]
    assert [line for line in infos if line.startswith("vocabulary:")] == ["vocabulary: 431 tokens"] * 2


def test_an_unknown_bucketing_key_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.bucket_by='next': choose one of context_reply, longest"):
        DialogueDataModule(data_config(tmp_path, bucket_by="next"))


def test_impossible_loader_settings_are_named_together_before_the_data_is_read(tmp_path: Path) -> None:
    cfg = data_config(tmp_path, batch_size=0, eval_batch_size=-1, num_workers=-1, max_target_len=1)
    with pytest.raises(DataError) as error:
        DialogueDataModule(cfg)
    assert str(error.value) == (
        "data.batch_size=0 must be >= 1; data.eval_batch_size=-1 must be >= 1; data.num_workers=-1 must be >= 0; "
        "data.max_target_len=1 must be >= 2"
    )
    assert not (tmp_path / "cache").exists()
    DialogueDataModule(data_config(tmp_path, batch_size=1, eval_batch_size=1, num_workers=0, max_target_len=2))


def test_an_unknown_normalization_is_refused_before_the_data_is_read(tmp_path: Path) -> None:
    datamodule = DialogueDataModule(data_config(tmp_path, normalization="bogus"))
    with pytest.raises(DataError, match=r"data\.normalization='bogus': choose one of full, moel"):
        datamodule.prepare_data()
    assert not (tmp_path / "cache").exists()
