"""The preprocessing cache: hits on the second call, and its key follows every input that matters."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from empdg.config import compose
from empdg.data.builtin import generate_builtin_corpus, write_builtin_csvs
from empdg.data.download import DatasetDownloadError
from empdg.data.errors import DataError
from empdg.data.preprocess import cache_key, prepare_examples

TINY = {"seed": 0, "train_per_emotion": 1, "valid_per_emotion": 1, "test_per_emotion": 1}


def data_config(name: str, tmp_path: Path, **overrides) -> dict:
    """The ``conf/data/<name>.yaml`` group (schema + YAML) as a plain dict, with the paths resolved into tmp_path."""
    data = OmegaConf.to_container(compose("train", [f"data={name}"]).data, resolve=False)
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
    with pytest.raises(FileNotFoundError, match="data.download=false") as caught:
        prepare_examples(cfg)
    assert isinstance(caught.value, DataError)  # the user's to fix: `error: <message>`, exit 2, no traceback


class _Exploit:
    """Unpickling this runs code: what a crafted cache file could do to a pickle-based cache."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('x')",))


def test_crafted_pickle_at_the_cache_path_is_never_executed(tmp_path: Path) -> None:
    cfg = data_config("builtin", tmp_path, builtin=TINY)
    first = prepare_examples(cfg)
    marker = tmp_path / "pwned"
    first.cache_path.write_bytes(pickle.dumps(_Exploit(marker)))
    # an old-style pickle cache beside it (as an earlier version wrote it) is not read either
    first.cache_path.with_suffix(".pkl").write_bytes(pickle.dumps(_Exploit(marker)))

    again = prepare_examples(cfg)
    assert not marker.exists()
    assert not again.cache_hit  # the file was not a valid cache: rebuilt ...
    assert again.examples == first.examples
    assert json.loads(again.cache_path.read_bytes())["key"] == cache_key(cfg)  # ... as plain JSON
    assert prepare_examples(cfg).cache_hit
    assert not marker.exists()


def test_cache_of_another_key_or_format_is_rebuilt(tmp_path: Path) -> None:
    cfg = data_config("builtin", tmp_path, builtin=TINY)
    first = prepare_examples(cfg)
    payload = json.loads(first.cache_path.read_bytes())
    for broken in ({**payload, "key": "0" * 20}, {**payload, "format": "other"}, [1, 2], {"splits": 3}):
        first.cache_path.write_text(json.dumps(broken), encoding="utf-8")
        result = prepare_examples(cfg)
        assert not result.cache_hit and result.examples == first.examples


def _set_row_field(position: int, value):
    def mutate(payload: dict) -> str:
        payload["splits"]["train"]["examples"][0][position] = value
        return json.dumps(payload)

    return mutate


def _token_table_of_ints(payload: dict) -> str:
    payload["splits"]["train"]["tokens"] = list(range(len(payload["splits"]["train"]["tokens"])))
    return json.dumps(payload)


def _index_past_the_table(payload: dict) -> str:
    payload["splits"]["train"]["examples"][0][5] = len(payload["splits"]["train"]["tokens"])
    return json.dumps(payload)


def _deeply_nested(payload: dict) -> str:
    return '{"format": "empdg-prepared-examples", "splits": ' + "[" * 100_000 + "]" * 100_000 + "}"


# (crafted file, the field the warning must name): each one parses and has our format and key
CRAFTED_CACHES = {
    "nested": (_deeply_nested, "nested more than"),
    "token_lists_replaced_by_ints": (_token_table_of_ints, "splits.train.tokens[0]: Input should be a valid list"),
    "negative_index": (_set_row_field(2, -1), "splits.train.examples[0][2]: Input should be greater than or equal"),
    "index_past_the_token_table": (_index_past_the_table, "splits.train.examples[0][5]: token index"),
    "emotion_999": (_set_row_field(1, 999), "splits.train.examples[0][1]: Input should be less than 32"),
    "string_for_a_list": (_set_row_field(4, "0"), "splits.train.examples[0][4]: Input should be a valid list"),
    "float_emotion": (_set_row_field(1, 3.0), "splits.train.examples[0][1]: Input should be a valid integer"),
    "roles_shorter_than_context": (_set_row_field(4, []), "splits.train.examples[0][4]: 0 role(s) for 1 context"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_CACHES))
def test_crafted_cache_is_rebuilt_with_a_warning_naming_file_and_field(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    craft, field = CRAFTED_CACHES[case]
    cfg = data_config("builtin", tmp_path, builtin=TINY)
    first = prepare_examples(cfg)
    first.cache_path.write_text(craft(json.loads(first.cache_path.read_bytes())), encoding="utf-8")

    with caplog.at_level("WARNING", logger="empdg.data.preprocess"):
        again = prepare_examples(cfg)
    assert not again.cache_hit and again.examples == first.examples
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(first.cache_path) in warnings[0] and field in warnings[0], warnings
    assert prepare_examples(cfg).cache_hit  # the bad file was overwritten by a good one


def ed_root_with(tmp_path: Path, **texts: str) -> Path:
    """A data.root with the built-in corpus as ED CSVs, some of them replaced by ``texts``."""
    root = tmp_path / "ed"
    write_builtin_csvs(root, generate_builtin_corpus(**TINY))
    for split, text in texts.items():
        (root / f"{split}.csv").write_text(text, encoding="utf-8")
    return root


ED_HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"


@pytest.mark.parametrize("text", ["", ED_HEADER], ids=["empty", "header-only"])
def test_empty_valid_csv_stops_naming_split_and_file(tmp_path: Path, text: str) -> None:
    root = ed_root_with(tmp_path, valid=text)
    cfg = data_config("empathetic_dialogues", tmp_path, root=str(root), download=False)
    with pytest.raises(DataError) as info:
        prepare_examples(cfg)
    message = str(info.value)
    assert f"valid split of data.root={root}" in message
    assert "no listener turns (valid.csv is empty or header-only)" in message
    assert not list((tmp_path / "cache").glob("*.json"))  # nothing cached for a broken corpus


def test_valid_csv_with_only_unreadable_rows_says_so(tmp_path: Path) -> None:
    root = ed_root_with(tmp_path, valid=ED_HEADER + "hit:1_conv:1,1,nonsense,,1,hello,,\n")
    cfg = data_config("empathetic_dialogues", tmp_path, root=str(root), download=False)
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"none of the 1 rows of valid\.csv"):
        prepare_examples(cfg)


def test_empty_train_csv_says_the_train_split_is_empty(tmp_path: Path) -> None:
    root = ed_root_with(tmp_path, train=ED_HEADER)
    cfg = data_config("empathetic_dialogues", tmp_path, root=str(root), download=False)
    with pytest.raises(DataError) as info:
        prepare_examples(cfg)
    message = str(info.value)
    assert f"train split of data.root={root} is empty" in message and "train.csv" in message
    assert "min_count" not in message


def test_empty_builtin_split_names_the_setting(tmp_path: Path) -> None:
    cfg = data_config("builtin", tmp_path, builtin={**TINY, "valid_per_emotion": 0})
    with pytest.raises(DataError, match=r"valid split of the built-in corpus .*valid_per_emotion=0"):
        prepare_examples(cfg)


@pytest.mark.parametrize("download", [True, False])
def test_unreadable_data_root_is_one_clear_error(tmp_path: Path, deny_listing, download: bool) -> None:
    """Not "files missing" and no download attempt: the folder exists but cannot be read."""
    root = ed_root_with(tmp_path)
    deny_listing(root)
    cfg = data_config(
        "empathetic_dialogues",
        tmp_path,
        root=str(root),
        download=download,
        url="http://127.0.0.1:9/never-contacted.tar.gz",
    )
    with pytest.raises(DataError) as info:
        prepare_examples(cfg)
    message = str(info.value)
    assert f"data.root={root} cannot be read: Permission denied" in message and "\n" not in message


def test_unreadable_csv_is_one_clear_error(tmp_path: Path, deny_reading) -> None:
    root = ed_root_with(tmp_path)
    deny_reading(root / "train.csv")
    cfg = data_config("empathetic_dialogues", tmp_path, root=str(root), download=False)
    with pytest.raises(DataError, match=rf"cannot read data file {root / 'train.csv'}: Permission denied"):
        prepare_examples(cfg)


def test_data_root_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    a_file = tmp_path / "ed.tar.gz"
    a_file.write_bytes(b"not a folder")
    cfg = data_config(
        "empathetic_dialogues",
        tmp_path,
        root=str(a_file),
        download=True,
        url="http://127.0.0.1:9/never-contacted.tar.gz",
    )
    with pytest.raises(DataError, match="is a file, not a folder"):
        prepare_examples(cfg)


def test_download_timeout_and_retries_reach_the_downloader(tmp_path: Path, silent_server) -> None:
    """data.download_timeout / data.download_retries bound a server that accepts and never answers."""
    url = silent_server.url()
    cfg = data_config(
        "empathetic_dialogues", tmp_path, root=str(tmp_path / "ed"), url=url, download_timeout=0.5, download_retries=1
    )
    started = time.monotonic()
    with pytest.raises(DatasetDownloadError) as info:
        prepare_examples(cfg)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert url in message and "data.download_timeout=0.5" in message and "2 attempt(s)" in message
    assert "by hand" in message
    assert len(silent_server.connections) == 2  # one attempt and one retry


def test_download_defaults_fail_a_silent_server_within_a_minute(tmp_path: Path) -> None:
    ed = data_config("empathetic_dialogues", tmp_path)
    timeout, retries = ed["download_timeout"], ed["download_retries"]
    backoff = sum(1.0 * 2**i for i in range(retries))  # ensure_ed_data's default backoff
    assert timeout * (retries + 1) + backoff < 60


@pytest.mark.real_data
def test_real_sample_has_the_papers_test_set(real_sample_dir: Path, tmp_path: Path) -> None:
    cfg = data_config("empathetic_dialogues", tmp_path, root=str(real_sample_dir), download=False)
    prepared = prepare_examples(cfg)
    test = prepared.examples["test"]
    assert sum(example.has_feedback for example in test) == 2713
    assert all(example.context_roles[-1] == 0 for example in test)
    assert len(prepared.examples["train"]) > 0 and len(prepared.examples["valid"]) > 0
    assert prepare_examples(cfg).cache_hit
