"""A run folder's stored config.yaml says *what* data a checkpoint was trained on, never *where* to read it."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from empdg.config import compose
from empdg.data.datamodule import DialogueDataModule
from empdg.evaluation import data_choice, pipeline
from empdg.training.checkpoint import LoadedCheckpoint


def compose_evaluate(tmp_path: Path, *overrides: str):
    paths = [f"paths.root_dir={tmp_path / 'here'}", f"paths.output_dir={tmp_path / 'out'}"]
    return compose("evaluate", ["logger=none", "evaluate.meaning=false", *paths, *overrides])


class WritesMarker:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def fake_loaded(run: Path, data: dict) -> LoadedCheckpoint:
    return LoadedCheckpoint(
        bundle=None, hyper_parameters={}, run_config={"data": data}, path=run / "checkpoints" / "last.ckpt"
    )


def test_stored_locations_are_replaced_by_this_command_lines(tmp_path: Path) -> None:
    run = tmp_path / "shared_run"
    stored = {
        "name": "empathetic_dialogues",
        "source": "ed",
        "root": str(run / "evilroot"),
        "cache_dir": str(run / "evilcache"),
        "url": "https://example.invalid/evil.tar.gz",
        "download": True,
        "num_workers": 64,
        "normalization": "full",
        "max_context_len": 77,
        "vocab": {"min_count": 3, "max_size": None},
    }
    cfg = compose_evaluate(tmp_path)
    data, source = data_choice.choose_data_config(cfg, fake_loaded(run, stored))
    here = tmp_path / "here"
    assert data["root"] == f"{here}/data/empatheticdialogues"
    assert data["cache_dir"] == f"{here}/.cache/empdg"
    assert data["url"].startswith("https://dl.fbaipublicfiles.com/")
    assert data["num_workers"] == 0
    assert not any(str(run) in str(value) for value in data.values()), data
    # what the model was trained on still comes from its run
    assert (data["name"], data["normalization"], data["max_context_len"]) == ("empathetic_dialogues", "full", 77)
    assert data["vocab"]["min_count"] == 3
    assert "checkpoint run config" in source


def test_locations_given_on_the_command_line_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ["data=empathetic_dialogues", f"data.root={tmp_path / 'mine'}", "data.max_context_len=12"]
    monkeypatch.setattr(
        data_choice, "data_overrides_on_command_line", lambda: ("empathetic_dialogues", {"root", "max_context_len"})
    )
    cfg = compose_evaluate(tmp_path, *overrides)
    stored = {"name": "empathetic_dialogues", "root": str(tmp_path / "run" / "evil"), "normalization": "full"}
    data, _ = data_choice.choose_data_config(cfg, fake_loaded(tmp_path / "run", stored))
    assert (data["root"], data["max_context_len"], data["normalization"]) == (str(tmp_path / "mine"), 12, "full")


def test_command_line_data_overrides_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    task = ["ckpt_path=x.ckpt", "data=empathetic_dialogues", "data.root=/d", "+data.limit_examples.test=5", "seed=1"]
    hydra_config = SimpleNamespace(overrides=SimpleNamespace(task=task))
    monkeypatch.setattr(data_choice.HydraConfig, "get", staticmethod(lambda: hydra_config))
    assert data_choice.data_overrides_on_command_line() == ("empathetic_dialogues", {"root", "limit_examples"})


def test_a_stored_data_name_is_never_a_path(tmp_path: Path) -> None:
    cfg = compose_evaluate(tmp_path)
    with pytest.raises(ValueError, match="no conf/data group"):
        data_choice.choose_data_config(cfg, fake_loaded(tmp_path, {"name": "../../evil", "max_context_len": 8}))


def test_data_from_run_false_ignores_the_run_config(tmp_path: Path) -> None:
    cfg = compose_evaluate(tmp_path, "evaluate.data_from_run=false")
    data, _ = data_choice.choose_data_config(cfg, fake_loaded(tmp_path, {"name": "builtin", "max_context_len": 8}))
    assert data["max_context_len"] == cfg.data.max_context_len


def test_evaluating_a_shared_run_folder_reads_nothing_from_it(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a run folder from elsewhere: the checkpoint, and a config.yaml pointing the data inside the run
    run = tmp_path / "shared_run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_checkpoint, run / "checkpoints" / "last.ckpt")
    stored = OmegaConf.load(tiny_checkpoint.parents[1] / "config.yaml")
    evil_cache, evil_root = run / "evilcache", run / "evilroot"
    stored.data.cache_dir = str(evil_cache)
    OmegaConf.update(stored, "data.root", str(evil_root), force_add=True)
    OmegaConf.save(stored, run / "config.yaml")
    # under every name the real data cache would have, a file whose unpickling runs code
    scratch = tmp_path / "scratch"
    DialogueDataModule({**OmegaConf.to_container(stored.data), "cache_dir": str(scratch)}).prepare_data()
    marker = tmp_path / "pwned.txt"
    bomb = pickle.dumps(WritesMarker(marker))
    for folder in (evil_cache, evil_root):
        folder.mkdir()
        for real in (p for p in scratch.rglob("*") if p.is_file()):
            (folder / real.relative_to(scratch)).parent.mkdir(parents=True, exist_ok=True)
            (folder / real.relative_to(scratch)).write_bytes(bomb)
    before = snapshot(run)
    assert any(name != "config.yaml" for name in before)

    used = []
    original = pipeline.load_split

    def load_split(data_cfg, *args, **kwargs):
        used.append(dict(data_cfg))
        return original(data_cfg, *args, **kwargs)

    monkeypatch.setattr(pipeline, "load_split", load_split)
    cfg = compose_evaluate(tmp_path, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "decoding.max_len=3")
    metrics = pipeline.run_evaluation(cfg)

    assert not marker.exists(), "evaluation unpickled a file from the shared run folder"
    assert snapshot(run) == before, "evaluation read or wrote inside the shared run folder's data paths"
    (data,) = used
    assert Path(data["cache_dir"]).resolve() == (tmp_path / "here" / ".cache" / "empdg").resolve()
    assert str(run) not in str(data.get("root", ""))
    assert data["max_context_len"] == 40  # the run's own data settings are still used
    assert data["builtin"]["test_per_emotion"] == 2
    assert metrics["n_examples"] > 0
