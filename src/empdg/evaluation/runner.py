"""Score a model on a test split (or an external prediction file) with the paper's metrics.

Model mode decodes every selected listener turn and computes, in one pass, perplexity (teacher
forcing, no label smoothing), emotion accuracy / macro-F1 / confusion matrix and the response-text
metrics. ``subset='feedback'`` keeps only turns followed by a speaker utterance: the 2,713-turn set
the EmpDG paper (and its released outputs) report on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from empdg.data.conversation import EMOTIONS
from empdg.data.datamodule import DialogueDataModule
from empdg.data.dataset import EncodedExample, collate
from empdg.data.examples import DialogueExample
from empdg.data.vocab import Vocab
from empdg.evaluation.decoding import DecodingConfig, decode, ids_to_text
from empdg.evaluation.metrics import Perplexity, ResponseMetrics, emotion_accuracy, emotion_macro_f1
from empdg.evaluation.release_format import PredictionRecord
from empdg.training.losses import sequence_nll
from empdg.training.module import EmpDGModule

SUBSETS = ("all", "feedback")


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    records: list[PredictionRecord]
    confusion: list[list[int]] | None = None
    ref_lengths: list[int] = field(default_factory=list)


def select_examples(
    examples: Sequence[DialogueExample], encoded: Sequence[EncodedExample], subset: str
) -> list[tuple[DialogueExample, EncodedExample]]:
    """Pair raw and encoded examples (same order) and keep the chosen subset."""
    if subset not in SUBSETS:
        raise ValueError(f"evaluate.subset={subset!r} must be one of {SUBSETS}")
    pairs = list(zip(examples, encoded))
    for raw, enc in pairs:
        if raw.example_id != enc.example_id:
            raise RuntimeError("raw and encoded test examples are out of order")
    return [(raw, enc) for raw, enc in pairs if subset == "all" or enc.has_feedback]


def _batches(pairs: list, size: int) -> Iterator[list]:
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def load_split(
    data_cfg: Mapping[str, Any], vocab: Vocab, split: str, seed: int = 0
) -> tuple[list[DialogueExample], list[EncodedExample]]:
    """Prepare the data with the checkpoint's vocabulary; return raw and encoded examples of ``split``."""
    datamodule = DialogueDataModule(data_cfg, seed=seed, vocab=vocab)
    datamodule.prepare_data()
    datamodule.setup("test")
    encoded = datamodule.datasets[split].items
    return datamodule.prepared.examples[split][: len(encoded)], encoded


def record_for(raw: DialogueExample, pred: str, predicted_emotion: str | None) -> PredictionRecord:
    return PredictionRecord(
        emotion=EMOTIONS[raw.emotion],
        context=[" ".join(utterance) for utterance in raw.context],
        pred=pred,
        ref=" ".join(raw.target),
        emotion_context=list(raw.context_emotion_words),
        feedback=list(raw.feedback) if raw.feedback else [],
        example_id=raw.example_id,
        predicted_emotion=predicted_emotion,
    )


@torch.no_grad()
def evaluate_model(
    module: EmpDGModule,
    pairs: list[tuple[DialogueExample, EncodedExample]],
    decoding: DecodingConfig,
    batch_size: int,
) -> EvaluationResult:
    """Decode and score ``pairs``; metrics keys as :func:`score_records` plus ppl and emotion_*."""
    module.eval()
    generator = module.generator
    vocab_size = len(module.vocab)
    has_classifier = generator.emotion_classifier is not None
    num_emotions = module.generator_config.num_emotions
    ppl, text = Perplexity(), ResponseMetrics()
    accuracy, macro_f1 = emotion_accuracy(num_emotions), emotion_macro_f1(num_emotions)
    confusion = MulticlassConfusionMatrix(num_classes=num_emotions)
    sampler = None
    if decoding.strategy == "sample" and decoding.seed is not None:
        sampler = torch.Generator().manual_seed(int(decoding.seed))
    records: list[PredictionRecord] = []
    for chunk in _batches(pairs, batch_size):
        batch = collate([enc for _, enc in chunk])
        out = generator(batch)
        target = batch["target_ext_ids"] if generator.cfg.copy else batch["target_ids"]
        seq = sequence_nll(out.log_probs, target, 0.0, vocab_size)
        ppl.update(seq.nll_sum, seq.n_tokens)
        predicted = [None] * len(chunk)
        if has_classifier:
            logits, labels = out.encoded.emotion_logits, batch["emotion_label"]
            for metric in (accuracy, macro_f1, confusion):
                metric.update(logits, labels)
            predicted = [EMOTIONS[i] for i in logits.argmax(dim=-1).tolist()]
        ids = decode(generator, batch, decoding, generator=sampler)
        hyps = [ids_to_text(row, module.vocab, oovs) for row, oovs in zip(ids.tolist(), batch["oovs"])]
        refs = [" ".join(raw.target) for raw, _ in chunk]
        text.update(hyps, refs)
        records.extend(record_for(raw, hyp, emo) for (raw, _), hyp, emo in zip(chunk, hyps, predicted))
    metrics: dict[str, Any] = {"ppl": float(ppl.compute())}
    matrix = None
    if has_classifier and records:
        metrics["emotion_acc"] = float(accuracy.compute())
        metrics["emotion_macro_f1"] = float(macro_f1.compute())
        matrix = confusion.compute().tolist()
    metrics.update(text.compute() if records else {})
    metrics["n_examples"] = len(records)
    return EvaluationResult(metrics, records, matrix, [len(r.ref.split()) for r in records])


def score_records(records: Sequence[PredictionRecord]) -> EvaluationResult:
    """Model-free metrics of a prediction file: dist_1/2, bleu_1..4, avg_len, rep_3 and the count."""
    text = ResponseMetrics()
    text.update([r.pred for r in records], [r.ref for r in records])
    metrics: dict[str, Any] = {**text.compute(), "n_examples": len(records)}
    return EvaluationResult(metrics, list(records), None, [len(r.ref.split()) for r in records])


def resolve_run_paths(data_cfg: dict[str, Any], run_folder: Path) -> dict[str, Any]:
    """Relative data paths of a stored run config: as given when they exist here, else from the run's root.

    Training writes paths relative to where it ran (``paths.root_dir=.``); its run folder is
    ``<root>/outputs/<experiment>/<time>``, so ``<root>`` is three levels up.
    """
    resolved = dict(data_cfg)
    run_root = run_folder.parents[2] if len(run_folder.parents) > 2 else run_folder
    for key in ("root", "cache_dir"):
        value = resolved.get(key)
        if not isinstance(value, str) or Path(value).is_absolute() or Path(value).exists():
            continue
        candidate = run_root / value
        if candidate.exists():
            resolved[key] = str(candidate.resolve())
    return resolved
