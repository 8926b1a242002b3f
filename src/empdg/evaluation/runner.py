"""Score a model on a test split (or an external prediction file) with the paper's metrics.

Model mode decodes every selected listener turn and computes, in one pass, perplexity (teacher
forcing, no label smoothing), emotion accuracy / macro-F1 / confusion matrix and the response-text
metrics. ``subset='feedback'`` keeps only turns followed by a speaker utterance: the 2,713-turn set
the EmpDG paper (and its released outputs) report on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from empdg.data.conversation import EMOTIONS
from empdg.data.datamodule import DialogueDataModule
from empdg.data.dataset import EncodedExample, batch_to_device, collate
from empdg.data.examples import DialogueExample
from empdg.data.vocab import Vocab
from empdg.evaluation.metrics import corpus_figures, emotion_macro_f1, per_example_nll
from empdg.evaluation.release_format import PredictionRecord
from empdg.evaluation.scored_examples import examples_from_records
from empdg.models.decoding import DecodingConfig, decode, ids_to_text
from empdg.models.inference import InferenceBundle

SUBSETS = ("all", "feedback")


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    records: list[PredictionRecord]
    confusion: list[list[int]] | None = None
    ref_lengths: list[int] = field(default_factory=list)
    # per record, what a bootstrap needs beyond the record: has_feedback, nll_sum, n_tokens (when known)
    example_scores: list[dict[str, Any]] = field(default_factory=list)


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
    bundle: InferenceBundle,
    pairs: list[tuple[DialogueExample, EncodedExample]],
    decoding: DecodingConfig,
    batch_size: int,
) -> EvaluationResult:
    """Decode and score ``pairs``; metrics keys as :func:`score_records` plus ppl and emotion_*."""
    bundle.eval()
    generator, vocab = bundle.generator, bundle.vocab
    device = next(generator.parameters()).device  # batches, sampler, metric states: where the bundle is
    has_classifier = generator.sizes.has_emotion_classifier
    num_emotions = generator.sizes.num_emotions
    macro_f1 = emotion_macro_f1(num_emotions).to(device)
    confusion = MulticlassConfusionMatrix(num_classes=num_emotions).to(device)
    sampler = None
    if decoding.strategy == "sample" and decoding.seed is not None:
        sampler = torch.Generator(device=device).manual_seed(int(decoding.seed))
    records: list[PredictionRecord] = []
    scores: list[dict[str, Any]] = []
    for chunk in _batches(pairs, batch_size):
        batch = batch_to_device(collate([enc for _, enc in chunk]), device)
        out = generator(batch)
        target = batch["target_ext_ids"] if generator.sizes.copy else batch["target_ids"]
        nll_rows, token_rows = per_example_nll(out.log_probs, target)
        scores.extend(
            {"has_feedback": bool(enc.has_feedback), "nll_sum": float(nll), "n_tokens": int(tokens)}
            for (_, enc), nll, tokens in zip(chunk, nll_rows.tolist(), token_rows.tolist())
        )
        predicted = [None] * len(chunk)
        if has_classifier:
            logits, labels = out.encoded.emotion_logits, batch["emotion_label"]
            for metric in (macro_f1, confusion):
                metric.update(logits, labels)
            predicted = [EMOTIONS[i] for i in logits.argmax(dim=-1).tolist()]
        ids = decode(generator, batch, decoding, generator=sampler)
        hyps = [ids_to_text(row, vocab, oovs) for row, oovs in zip(ids.tolist(), batch["oovs"])]
        records.extend(record_for(raw, hyp, emo) for (raw, _), hyp, emo in zip(chunk, hyps, predicted))
    # perplexity per the vocabulary's unit: a subword model's is `subword_ppl`, never in the `ppl` column
    name = vocab.metric_name
    figures = corpus_figures(examples_from_records(records, scores))
    metrics: dict[str, Any] = {name("ppl"): figures.pop("ppl", math.nan)}
    if name("ppl") != "ppl":  # per-example NLL under its own names too, so bootstrap tables never mix units
        scores = [{k if k == "has_feedback" else name(k): v for k, v in row.items()} for row in scores]
    matrix = None
    if has_classifier and records:
        metrics["emotion_acc"] = figures.pop("emotion_acc")
        metrics["emotion_macro_f1"] = float(macro_f1.compute())
        matrix = confusion.compute().tolist()
    metrics.update(figures)
    metrics["n_examples"] = len(records)
    return EvaluationResult(metrics, records, matrix, [len(r.ref.split()) for r in records], scores)


def score_records(records: Sequence[PredictionRecord]) -> EvaluationResult:
    """Model-free metrics of a prediction file: every registered metric its records support (dist_1/2,
    bleu_1..4, avg_len, rep_3, unique replies, valence agreement; emotion_acc with predicted emotions) and the
    count."""
    metrics: dict[str, Any] = {**corpus_figures(examples_from_records(records)), "n_examples": len(records)}
    scores = [{"has_feedback": None if r.feedback is None else bool(r.feedback)} for r in records]
    return EvaluationResult(metrics, list(records), None, [len(r.ref.split()) for r in records], scores)
