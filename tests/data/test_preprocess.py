"""The preprocessing cache: hits on the second call, and its key follows every input that matters."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from empdg.data.builtin import generate_builtin_corpus, write_builtin_csvs
from empdg.data.preprocess import cache_key, prepare_examples

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
TINY = {"seed": 0, "train_per_emotion": 1, "valid_per_emotion": 1, "test_per_emotion": 1}


def data_config(name: str, tmp_path: Path, **overrides) -> dict:
    """The ``conf/data/<name>.yaml`` group as a plain dict, with the paths resolved into tmp_path."""
    data = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
    paths = OmegaConf.create(
        {"root_dir": str(tmp_path), "data_dir": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache")}
    )
    cfg = OmegaConf.create({"paths": paths, "data": data})
    cfg.data = OmegaConf.merge(cfg.data, OmegaConf.create(overrides))
    resolved = OmegaConf.to_container(cfg, resolve=True)["data"]
    assert resolved["cache_dir"] == str(tmp_path / "cache")
    return resolved


def test_data_configs_build_from_the_yaml_groups(tmp_path: Path) -> None:
    builtin = data_config("builtin", tmp_path)
    assert builtin["source"] == "builtin"
    ed = data_config("empathetic_dialogues", tmp_path)
    assert ed["source"] == "ed"
    assert ed["root"] == str(tmp_path / "data" / "empatheticdialogues")
    assert cache_key(builtin) != cache_key({**builtin, "builtin": {**builtin["builtin"], "seed": 1}})


def test_second_call_is_a_cache_hit_with_equal_examples(tmp_path: Path) -> None:
    cfg = data_config("builtin", tmp_path, builtin=TINY)
    first = prepare_examples(cfg)
    assert not first.cache_hit
    assert first.cache_path.exists()
    assert first.cache_path.parent == tmp_path / "cache"
    second = prepare_examples(cfg)
    assert second.cache_hit
    assert second.cache_path == first.cache_path
    assert second.examples == first.examples
    assert set(first.examples) == {"train", "valid", "test"}
    assert all(first.examples[split] for split in first.examples)
    assert "cache hit" in second.description


def test_key_follows_builtin_seed_and_sizes(tmp_path: Path) -> None:
    base = data_config("builtin", tmp_path, builtin=TINY)
    other_seed = data_config("builtin", tmp_path, builtin={**TINY, "seed": 1})
    other_size = data_config("builtin", tmp_path, builtin={**TINY, "train_per_emotion": 2})
    keys = {cache_key(base), cache_key(other_seed), cache_key(other_size)}
    assert len(keys) == 3
    first = prepare_examples(base)
    second = prepare_examples(other_seed)
    assert not second.cache_hit
    assert second.cache_path != first.cache_path
    assert second.examples != first.examples


def test_key_follows_normalization(tmp_path: Path) -> None:
    moel = data_config("builtin", tmp_path, builtin=TINY, normalization="moel")
    full = data_config("builtin", tmp_path, builtin=TINY, normalization="full")
    assert cache_key(moel) != cache_key(full)
    prepare_examples(moel)
    result = prepare_examples(full)
    assert not result.cache_hit


def test_key_ignores_paths(tmp_path: Path) -> None:
    a = data_config("builtin", tmp_path / "a", builtin=TINY)
    b = data_config("builtin", tmp_path / "b", builtin=TINY)
    assert cache_key(a) == cache_key(b)


def test_ed_key_follows_file_contents(tmp_path: Path) -> None:
    root = tmp_path / "ed"
    write_builtin_csvs(root, generate_builtin_corpus(**TINY))
    cfg = data_config("empathetic_dialogues", tmp_path, root=str(root), download=False)
    first = prepare_examples(cfg)
    assert not first.cache_hit
    assert first.cache_path.name.startswith("ed-")
    assert prepare_examples(cfg).cache_hit

    # the same files in another folder share the cache ...
    copy = tmp_path / "copy"
    copy.mkdir()
    for split in ("train", "valid", "test"):
        (copy / f"{split}.csv").write_bytes((root / f"{split}.csv").read_bytes())
    assert cache_key({**cfg, "root": str(copy)}) == cache_key(cfg)

    # ... but editing one byte of any file changes the key and rebuilds
    test_csv = root / "test.csv"
    lines = test_csv.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("I ", "We ", 1) if "I " in lines[1] else lines[1] + "x"
    test_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    changed = prepare_examples(cfg)
    assert not changed.cache_hit
    assert changed.cache_path != first.cache_path


def test_ed_without_files_and_download_disabled_fails_clearly(tmp_path: Path) -> None:
    cfg = data_config("empathetic_dialogues", tmp_path, root=str(tmp_path / "missing"), download=False)
    with pytest.raises(FileNotFoundError, match="data.download=false"):
        prepare_examples(cfg)


@pytest.mark.real_data
def test_real_sample_has_the_papers_test_set(real_sample_dir: Path, tmp_path: Path) -> None:
    cfg = data_config("empathetic_dialogues", tmp_path, root=str(real_sample_dir), download=False)
    prepared = prepare_examples(cfg)
    test = prepared.examples["test"]
    assert sum(example.has_feedback for example in test) == 2713
    assert all(example.context_roles[-1] == 0 for example in test)
    assert len(prepared.examples["train"]) > 0 and len(prepared.examples["valid"]) > 0
    assert prepare_examples(cfg).cache_hit
