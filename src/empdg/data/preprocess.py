"""Deterministic preprocessing with an on-disk cache keyed by a hash of inputs and settings.

Normalising and tagging the full corpus is the slow part of data preparation, so its result
(the normalised examples of every split) is stored under ``data.cache_dir``. The key covers the
raw input (file contents for ED, generator settings for the built-in corpus) and
``PREPROCESS_VERSION``, which must be bumped whenever normalisation or example construction
changes, so a stale cache can never be read.

The cache is plain JSON, never pickle: anyone who can drop a file into the cache folder could
otherwise run code in every training job that loads it. JSON can only yield data; a file that
does not parse as our format (an old ``.pkl``, a truncated or crafted file) is ignored and rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from empdg.data.conversation import EMOTIONS, SPLITS, Conversation
from empdg.data.download import DEFAULT_RETRIES, DEFAULT_TIMEOUT
from empdg.data.errors import DataError, MissingDataError, check_readable_dir
from empdg.data.examples import DialogueExample, build_examples
from empdg.data.file_schema import (
    MB,
    InvalidFileError,
    fixed_array,
    invalid,
    load_json_bounded,
    paused_gc,
    validate,
)
from empdg.data.text import SCHEMES

log = logging.getLogger(__name__)
_LOGGED_CACHES: set[str] = set()  # cache files whose data line this process has logged

#: 2: JSON cache (was pickle)
PREPROCESS_VERSION = 2
SOURCES = ("builtin", "ed")
CACHE_FORMAT = "empdg-prepared-examples"
CACHE_SUFFIX = ".json"


@dataclass
class PreparedData:
    examples: dict[str, list[DialogueExample]]
    cache_path: Path
    cache_hit: bool
    seconds: float
    description: str


def _sha256_files(paths: list[Path]) -> str:
    from empdg.data.ed_csv import read_csv_bytes  # unreadable files end in a DataError naming them

    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(read_csv_bytes(path))
    return digest.hexdigest()


def _builtin_settings(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    builtin = data_cfg["builtin"]
    return {k: int(builtin[k]) for k in ("seed", "train_per_emotion", "valid_per_emotion", "test_per_emotion")}


def cache_key(data_cfg: Mapping[str, Any]) -> str:
    """Hash of everything the cached examples depend on (never of paths or timestamps)."""
    source = data_cfg["source"]
    if source == "builtin":
        from empdg.data.builtin import BUILTIN_VERSION

        payload: dict[str, Any] = {"builtin": _builtin_settings(data_cfg), "builtin_version": BUILTIN_VERSION}
    elif source == "ed":
        root = Path(data_cfg["root"])
        payload = {"ed_sha256": _sha256_files([root / f"{split}.csv" for split in SPLITS])}
    else:
        raise ValueError(f"data.source={source!r} is unknown; choose one of {SOURCES}")
    payload["normalization"] = data_cfg.get("normalization", "moel")
    payload["version"] = PREPROCESS_VERSION
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def load_conversations(data_cfg: Mapping[str, Any]) -> dict[str, list[Conversation]]:
    """Read the raw conversations of every split from the configured source."""
    return _load_with_reports(data_cfg)[0]


def _load_with_reports(data_cfg: Mapping[str, Any]) -> tuple[dict[str, list[Conversation]], dict[str, Any]]:
    """Conversations per split, and for ED the reader's reports (to explain an empty split)."""
    source = data_cfg["source"]
    if source == "builtin":
        from empdg.data.builtin import generate_builtin_corpus

        return generate_builtin_corpus(**_builtin_settings(data_cfg)), {}
    if source == "ed":
        from empdg.data.ed_csv import load_ed_splits

        return load_ed_splits(Path(data_cfg["root"]))
    raise ValueError(f"data.source={source!r} is unknown; choose one of {SOURCES}")


_SPLIT_NEEDED_FOR = {
    "train": "training needs it",
    "valid": "validation metrics and checkpoint selection need it",
    "test": "evaluation needs it",
}


def empty_split_error(split: str, data_cfg: Mapping[str, Any], report: Any = None) -> DataError:
    """Say which split is empty and why, naming the file (ED) or the setting (built-in corpus).

    An empty valid split used to give a "successful" run without validation metrics, and an empty
    train split surfaced as a puzzling vocabulary error; both are data problems and say so.
    """
    needed = _SPLIT_NEEDED_FOR.get(split, "")
    if data_cfg["source"] == "builtin":
        return DataError(
            f"the {split} split of the built-in corpus is empty (data.builtin.{split}_per_emotion="
            f"{data_cfg['builtin'][f'{split}_per_emotion']}); set it to at least 1: {needed}"
        )
    name = f"{split}.csv"
    if report is None:
        detail = f"no example was prepared from {name}"
    elif report.rows == 0:
        detail = f"{name} is empty or header-only"
    elif report.conversations == 0:
        detail = f"none of the {report.rows} rows of {name} could be read; see the EDFormatWarning about it"
    else:
        detail = (
            f"the {report.conversations} conversation(s) of {name} have a single utterance each, "
            "so no listener turn to predict"
        )
    return DataError(
        f"the {split} split of data.root={data_cfg['root']} is empty: no listener turns ({detail}); "
        f"put the official {name} there (it is in empatheticdialogues.tar.gz): {needed}"
    )


def _check_splits(
    examples: Mapping[str, list[DialogueExample]], data_cfg: Mapping[str, Any], reports: Mapping[str, Any] | None = None
) -> None:
    """Every split must yield examples: stop here, before a vocabulary or a model is built."""
    for split in SPLITS:
        if not examples.get(split):
            raise empty_split_error(split, data_cfg, (reports or {}).get(split))


def ensure_source_available(data_cfg: Mapping[str, Any]) -> None:
    """For ED: download the official archive when ``data.root`` lacks the CSVs (if allowed)."""
    if data_cfg["source"] != "ed":
        return
    root = Path(data_cfg["root"])
    check_readable_dir(root)  # else an unreadable folder looks empty and a download starts
    if all((root / f"{split}.csv").exists() for split in SPLITS):
        return
    if not data_cfg.get("download", True):
        raise MissingDataError(
            f"data.root={root} does not hold train.csv, valid.csv and test.csv and data.download=false. "
            "Extract the official empatheticdialogues.tar.gz there, or set data.download=true."
        )
    from empdg.data.download import ensure_ed_data

    timeout = data_cfg.get("download_timeout")  # configs written before these keys get the defaults
    retries = data_cfg.get("download_retries")
    ensure_ed_data(
        root,
        url=data_cfg["url"],
        sha256=data_cfg.get("archive_sha256"),
        timeout=float(DEFAULT_TIMEOUT if timeout is None else timeout),
        retries=int(DEFAULT_RETRIES if retries is None else retries),
    )


def _tag_functions(scheme: str):
    from empdg.data.emotion_words import get_lexicon
    from empdg.data.text import normalize

    lexicon = get_lexicon()
    return partial(normalize, scheme=scheme), lexicon.emotion_words, lexicon.emotion_mask


def prepare_examples(data_cfg: Mapping[str, Any]) -> PreparedData:
    """Return normalised examples for all splits, from the cache when its key matches."""
    scheme = data_cfg.get("normalization", "moel")
    if scheme not in SCHEMES:  # before any source is read: a wrong value is one line, not a traceback
        raise DataError(f"data.normalization={scheme!r}: choose one of {', '.join(SCHEMES)}")
    start = time.perf_counter()
    ensure_source_available(data_cfg)
    key = cache_key(data_cfg)
    cache_path = Path(data_cfg["cache_dir"]) / f"{data_cfg['source']}-{key}{CACHE_SUFFIX}"
    examples = _read_cache(cache_path, key)
    hit = examples is not None
    if examples is None:
        normalize, emotion_words, emotion_mask = _tag_functions(scheme)
        conversations, reports = _load_with_reports(data_cfg)
        examples = {
            split: build_examples(conversations[split], normalize, emotion_words, emotion_mask) for split in SPLITS
        }
        _check_splits(examples, data_cfg, reports)  # before writing: a cache never holds an empty split
        _atomic_write(_encode_cache(examples, key), cache_path)
    else:
        _check_splits(examples, data_cfg)
    seconds = time.perf_counter() - start
    sizes = ", ".join(f"{split}={len(examples[split])}" for split in SPLITS)
    description = f"{data_cfg['source']} ({sizes} examples; cache {'hit' if hit else 'miss'}: {cache_path})"
    # prepare_data, setup and every trainer.fit/validate (each sweep trial too) come here: one line per cache
    level = logging.DEBUG if str(cache_path) in _LOGGED_CACHES else logging.INFO
    _LOGGED_CACHES.add(str(cache_path))
    log.log(level, "data: %s in %.2fs", description, seconds)
    return PreparedData(examples, cache_path, hit, seconds, description)


# -- the cache file ------------------------------------------------------------------------------
# {"format", "version", "key", "splits": {split: {"tokens": [token list, ...], "examples": [row, ...]}}}
# Each row is [example_id, emotion, situation, [context...], context_roles, target, feedback,
# context_emotion_words, target_emotion_mask, feedback_emotion_words] where situation, context
# items, target and feedback are indices into "tokens": the examples of one conversation share
# their utterances (as build_examples made them), which keeps the file small and the load fast.


def _encode_cache(examples: Mapping[str, list[DialogueExample]], key: str) -> bytes:
    splits: dict[str, Any] = {}
    for split, split_examples in examples.items():
        table: list[list[str]] = []
        index: dict[int, int] = {}  # id(token list) -> position in table; the lists outlive this loop

        def ref(tokens: list[str], table=table, index=index) -> int:
            pos = index.get(id(tokens))
            if pos is None:
                pos = index[id(tokens)] = len(table)
                table.append(tokens)
            return pos

        rows = [
            [
                ex.example_id,
                ex.emotion,
                ref(ex.situation),
                [ref(u) for u in ex.context],
                ex.context_roles,
                ref(ex.target),
                None if ex.feedback is None else ref(ex.feedback),
                ex.context_emotion_words,
                ex.target_emotion_mask,
                ex.feedback_emotion_words,
            ]
            for ex in split_examples
        ]
        splits[split] = {"tokens": table, "examples": rows}
    payload = {"format": CACHE_FORMAT, "version": PREPROCESS_VERSION, "key": key, "splits": splits}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


#: far above any cache we write (the real ED sample's 5,685 examples make 2.7 MB): a larger file is not ours
CACHE_MAX_BYTES = 1024 * MB
_CACHE_MAX_DEPTH = 8  # the format nests 5 levels


@functools.cache
def _cache_schema() -> Any:
    """The cache file's schema (built on first use: pydantic is imported only when a cache is read)."""
    from typing import Annotated, Literal

    from pydantic import Field
    from typing_extensions import TypedDict

    index = Annotated[int, Field(ge=0)]  # into the split's token table; its end is checked in _check_indices
    flag = Annotated[int, Field(ge=0, le=1)]
    row = fixed_array(
        str,  # example_id
        Annotated[int, Field(ge=0, lt=len(EMOTIONS))],  # emotion
        index,  # situation
        list[index],  # context
        list[flag],  # context_roles (speaker 0 / listener 1)
        index,  # target
        index | None,  # feedback
        list[str],  # context_emotion_words
        list[flag],  # target_emotion_mask
        list[str],  # feedback_emotion_words
    )

    # functional syntax: the class syntax's annotations are strings here (__future__), unresolvable in a function
    split = TypedDict("split", {"tokens": list[list[str]], "examples": list[row]})  # noqa: UP013
    splits = TypedDict("splits", {name: split for name in SPLITS})  # noqa: UP013
    return TypedDict("cache", {"format": Literal[CACHE_FORMAT], "version": int, "key": str, "splits": splits})  # noqa: UP013


def _check_indices(payload: dict[str, Any], path: Path) -> None:
    """What the schema cannot say: indices fall inside their token table, parallel lists match."""
    for split in SPLITS:
        table = payload["splits"][split]["tokens"]
        size = len(table)
        for n, (_, _, sit, ctx, roles, tgt, fb, _, mask, _) in enumerate(payload["splits"][split]["examples"]):
            where = f"splits.{split}.examples[{n}]"
            for position, idx in ((2, sit), (5, tgt), (6, fb), *((3, i) for i in ctx)):
                if idx is not None and idx >= size:
                    raise invalid(
                        path,
                        f"token index {idx} is past the end of the token table ({size} entries)",
                        f"{where}[{position}]",
                    )
            if len(roles) != len(ctx):
                raise invalid(path, f"{len(roles)} role(s) for {len(ctx)} context utterance(s)", f"{where}[4]")
            if len(mask) != len(table[tgt]):
                raise invalid(path, f"{len(mask)} mask value(s) for {len(table[tgt])} target token(s)", f"{where}[8]")


def _decode_cache(path: Path, key: str) -> dict[str, list[DialogueExample]]:
    """Read and validate a cache file; InvalidFileError (naming the field) when it is not a valid cache of ``key``."""
    payload = load_json_bounded(path, max_bytes=CACHE_MAX_BYTES, max_depth=_CACHE_MAX_DEPTH, what="preprocessing cache")
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise InvalidFileError(path, "not an empdg examples cache")
    if payload.get("version") != PREPROCESS_VERSION or payload.get("key") != key:
        raise InvalidFileError(path, f"version {payload.get('version')!r} / key {payload.get('key')!r} do not match")
    validate(payload, _cache_schema(), path=path)  # types and ranges, before any value is used
    _check_indices(payload, path)
    examples: dict[str, list[DialogueExample]] = {}
    for split in SPLITS:
        part = payload["splits"][split]
        table = part["tokens"]
        examples[split] = [
            DialogueExample(
                example_id=eid,
                emotion=emotion,
                situation=table[sit],
                context=[table[i] for i in ctx],
                context_roles=roles,
                target=table[tgt],
                feedback=None if fb is None else table[fb],
                context_emotion_words=cew,
                target_emotion_mask=mask,
                feedback_emotion_words=few,
            )
            for eid, emotion, sit, ctx, roles, tgt, fb, cew, mask, few in part["examples"]
        ]
    return examples


def _read_cache(path: Path, key: str) -> dict[str, list[DialogueExample]] | None:
    """The cached examples, or None (rebuild, overwriting the file) when it is absent or not a valid cache."""
    if not path.is_file():
        return None
    try:
        with paused_gc():  # tens of thousands of acyclic lists: collecting meanwhile only re-scans them
            return _decode_cache(path, key)
    except InvalidFileError as err:
        log.warning("ignoring the invalid preprocessing cache %s; rebuilding it", err)
        return None


def _atomic_write(data: bytes, path: Path) -> None:
    """Write-then-rename so a crashed or concurrent run never leaves a half-written cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
