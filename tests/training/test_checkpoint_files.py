"""What a command accepts as a checkpoint: a .ckpt file or a run folder; anything else is one clear error
naming the file, never an unpickler's IndexError or a FIFO reported as missing. A checkpoint is read as data,
never run as code; one of another model or vocabulary is refused naming what differs; a run names its
checkpoints by step, or best by the monitored metric."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from tiny import MLE_ONLY

from empdg.training.checkpoint import best_named_by_last, load_checkpoint_file, resolve_checkpoint_path
from empdg.training.run import run_training


def fake_checkpoint(path: Path, best: str | None = None) -> Path:
    """What the loader checks of a Lightning checkpoint: hyper-parameters, a state dict, ModelCheckpoint's state."""
    callbacks = {"ModelCheckpoint{'monitor': 'val/loss'}": {"best_model_path": best}} if best else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"model": {"name": "empdg"}}, "state_dict": {}, "callbacks": callbacks}, path)
    return path


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"speaker,utterance\nhi,there\n", "neither a zip archive nor a pickle"),  # was IndexError: pop from empty list
        (b"hello world", "neither a zip archive nor a pickle"),  # was KeyError: 101
        (b"", "the file is empty"),
        (b"PK\x03\x04 truncated", "a damaged or truncated zip archive"),
        (b"\x80\x02(abc", "Error"),  # a pickle opcode, then garbage: whatever torch's unpickler raises, named
    ],
)
def test_a_file_that_is_no_torch_checkpoint_is_named(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"ckpt_path={path} is not a PyTorch checkpoint \(.*{why}"):
        load_checkpoint_file(path)


def test_a_zip_archive_that_torch_did_not_write_is_named(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "model.ckpt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", "hello")
    with pytest.raises(ValueError, match=r"is not a PyTorch checkpoint \(RuntimeError"):
        load_checkpoint_file(path, "model.init_from")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_not_a_regular_file_and_is_never_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "model.ckpt"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: the check must not open it
    with pytest.raises(ValueError, match=rf"ckpt_path={fifo} is not a regular file"):
        load_checkpoint_file(fifo)


def test_a_missing_path_still_says_it_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint_path(tmp_path / "nope.ckpt")


def test_a_run_folder_stands_for_its_best_checkpoint_else_last(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    folder = run / "checkpoints"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="is a folder without a checkpoint"):
        resolve_checkpoint_path(run)
    fake_checkpoint(folder / "best-2.ckpt")
    fake_checkpoint(folder / "best-9.ckpt")  # the newer one, but not the one last.ckpt names as best
    fake_checkpoint(folder / "last.ckpt", best=str(Path("/elsewhere/checkpoints/best-2.ckpt")))
    assert resolve_checkpoint_path(run) == folder / "best-2.ckpt"
    assert f"ckpt_path={run}: using its best checkpoint {folder / 'best-2.ckpt'}" in capsys.readouterr().err
    assert resolve_checkpoint_path(folder, "model.init_from") == folder / "best-2.ckpt"  # checkpoints/ itself too
    assert resolve_checkpoint_path(run, which="last") == folder / "last.ckpt"  # what a resume continues from
    assert load_checkpoint_file(run)["hyper_parameters"] == {"model": {"name": "empdg"}}
    for best in folder.glob("best-*.ckpt"):
        best.unlink()
    assert resolve_checkpoint_path(run) == folder / "last.ckpt"
    assert "using its last checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("zipped", [True, False])
def test_the_best_checkpoint_is_read_from_last_ckpt_without_its_weights(tmp_path: Path, zipped: bool) -> None:
    """last.ckpt is memory-mapped to read which checkpoint is best (a pretrained one is hundreds of MB); the legacy
    format, which torch cannot map, is read whole."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    fake_checkpoint(folder / "best-2.ckpt")
    weights = {"generator.w": torch.arange(6.0)}
    state = {"ModelCheckpoint{'monitor': 'val/ppl'}": {"best_model_path": "/else/checkpoints/best-2.ckpt"}}
    last = {"hyper_parameters": {"model": {"name": "empdg"}}, "state_dict": weights, "callbacks": state}
    torch.save(last, folder / "last.ckpt", _use_new_zipfile_serialization=zipped)
    assert best_named_by_last(folder / "last.ckpt") == folder / "best-2.ckpt"
    mapped = load_checkpoint_file(folder / "last.ckpt", mmap=True)
    assert torch.equal(mapped["state_dict"]["generator.w"], weights["generator.w"]) and mapped["callbacks"] == state


def test_hyper_parameters_that_are_not_a_mapping_are_no_empdg_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"hyper_parameters": 5, "state_dict": {}}, path)  # was AttributeError: 'int' object has no 'get'
    with pytest.raises(ValueError, match="is not an empdg Lightning checkpoint"):
        load_checkpoint_file(path)


# -- a checkpoint is read as data, never run as code ----------------------------------------------
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
    cfg = compose_train(*MLE_ONLY, "training.phases.generator_pretrain=2", f"ckpt_path={ckpt}")
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
    cfg = compose_train(*MLE_ONLY, "training.phases.generator_pretrain=2", f"model.init_from={ckpt}")
    with pytest.raises(ValueError, match=r"model\.init_from=.*unsafe"):
        run_training(cfg)
    assert not marker.exists()


# -- the names of a run's checkpoints; resuming one of another model or vocabulary ------------------
def run_dir_checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))


def test_checkpoints_without_a_monitor_are_named_by_step(two_step_run):
    names = run_dir_checkpoints(two_step_run)
    assert "last.ckpt" in names
    assert not [n for n in names if n.startswith("best")], names
    assert {"step-1.ckpt", "step-2.ckpt"} <= set(names)


def test_checkpoints_with_a_monitor_are_named_best(compose_train, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="empdg.training.progress")
    run_training(compose_train(*MLE_ONLY, "training.phases.generator_pretrain=2", "callbacks.progress.every_n_steps=0"))
    names = run_dir_checkpoints(tmp_path / "run")
    assert [n for n in names if n.startswith("best-")], names
    assert "progress: " not in caplog.text  # every_n_steps=0 disables the progress lines


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
    cfg = compose_train(*MLE_ONLY, "training.phases.generator_pretrain=4", f"ckpt_path={ckpt}", *overrides)
    with pytest.raises(ValueError) as error:
        run_training(cfg)
    message = str(error.value)
    assert f"ckpt_path={ckpt} cannot be resumed" in message
    for part in named:
        assert part in message, message
    assert "model.init_from" in message  # the fix for "I only want its weights"
