"""Metrics that read meaning: the packaged MiniLM sentence encoder and the reply-emotion classifier."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from empdg.data.conversation import EMOTIONS
from empdg.models.reply_meaning import (
    ReplyEmotionClassifier,
    fit_softmax_regression,
    meaning_metrics,
    meaning_scores,
    reply_emotion_classifier,
)
from empdg.models.sentence_encoder import _pooling, sentence_encoder

PUPPY = "i just got a new puppy and i am so happy"


@pytest.fixture(scope="module")
def encoder():
    return sentence_encoder()


def test_similarities_match_the_model_cards_pooling(encoder) -> None:
    vectors = encoder.encode([PUPPY, "my new dog makes me really glad", "the stock market fell sharply today"])
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)  # the Normalize module
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.74, abs=0.01)  # the hand check
    assert float(vectors[0] @ vectors[2]) == pytest.approx(0.06, abs=0.02)


def test_each_distinct_text_is_encoded_once_and_order_is_kept(encoder) -> None:
    calls = []
    original = encoder._encode
    encoder._encode = lambda texts: calls.append(list(texts)) or original(texts)
    try:
        vectors = encoder.encode(["b b", "a", "b b", "a", "c"])
    finally:
        encoder._encode = original
    assert calls == [["a", "c", "b b"]]  # unique, shortest first
    assert torch.equal(vectors[0], vectors[2]) and torch.equal(vectors[1], vectors[3])
    assert torch.allclose(vectors[4], encoder.encode(["c"])[0], atol=1e-5)  # padding moves the 6th digit


def test_pooling_follows_the_sentence_transformers_files(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Transformer"}]))
    assert _pooling(tmp_path) == ("cls", False)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True,
                                                                   "pooling_mode_max_tokens": True}))  # fmt: skip
    with pytest.raises(ValueError, match="one pooling mode"):
        _pooling(tmp_path)


def test_softmax_regression_separates_separable_classes_the_same_way_twice() -> None:
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0], [-0.9, -0.1]])
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    weight, bias = fit_softmax_regression(features, targets, 3)
    classifier = ReplyEmotionClassifier(("a", "b", "c"), weight, bias, key="k")
    assert classifier.predict(features) == ["a", "a", "b", "b", "c", "c"]
    again, _ = fit_softmax_regression(features, targets, 3)
    assert torch.equal(weight, again)


def test_meaning_metrics_are_means_and_shares() -> None:
    rows = [
        {"sim_reference": 0.5, "sim_context": 0.1, "reply_emotion": "sad", "reference_emotion": "sad"},
        {"sim_reference": 0.25, "sim_context": -0.3, "reply_emotion": "joyful", "reference_emotion": "angry"},
    ]
    metrics = meaning_metrics(rows, ["sad", "angry"])
    assert metrics == pytest.approx(
        {"sim_reference": 0.375, "sim_context": -0.1, "reply_emotion_acc": 0.5, "reply_emotion_acc_gold": 1.0}
    )
    assert "reply_emotion_acc" not in meaning_metrics([{"sim_reference": 1.0, "sim_context": 1.0}], ["sad"])
    assert meaning_metrics([], []) == {}


def test_classifier_is_cached_as_json_and_a_bad_cache_is_rebuilt(encoder, tmp_path: Path, caplog) -> None:
    replies = ["i am so sorry for your loss", "that is wonderful news , congratulations", "how awful , poor you",
               "great job , you must be proud"]  # fmt: skip
    labels = ["sad", "proud", "sad", "proud"]
    first = reply_emotion_classifier(replies, labels, encoder, tmp_path)
    [cached] = list(tmp_path.glob("reply-emotion-*.json"))
    assert json.loads(cached.read_text())["labels"] == ["proud", "sad"]
    assert torch.equal(reply_emotion_classifier(replies, labels, encoder, tmp_path).weight, first.weight)
    for damage in ("{" * 5000, json.dumps({"format": 1, "key": first.key, "labels": ["a"], "weight": [[1.0]],
                                            "bias": [0.0]}), "not json"):  # fmt: skip
        cached.write_text(damage)
        with caplog.at_level(logging.WARNING):
            rebuilt = reply_emotion_classifier(replies, labels, encoder, tmp_path)
        assert torch.equal(rebuilt.weight, first.weight)
        assert "rebuilding" in caplog.text
        caplog.clear()
    other = reply_emotion_classifier(replies, ["sad", "sad", "proud", "proud"], encoder, tmp_path)
    assert other.key != first.key and len(list(tmp_path.glob("reply-emotion-*.json"))) == 2  # new data, new key


@pytest.mark.real_data
def test_on_the_real_sample_gold_replies_carry_their_emotion_above_chance(encoder, real_sample_dir, tmp_path):
    from empdg.config import compose
    from empdg.data.preprocess import prepare_examples

    cfg = compose("train", ["data=empathetic_dialogues", f"data.root={real_sample_dir}", "data.download=false",
                            f"paths.root_dir={tmp_path}"])  # fmt: skip
    examples = prepare_examples(OmegaConf.to_container(cfg.data, resolve=True)).examples
    train, test = examples["train"][:800], examples["test"][:300]
    classifier = reply_emotion_classifier([" ".join(e.target) for e in train], [EMOTIONS[e.emotion] for e in train],
                                          encoder)  # fmt: skip
    refs = [" ".join(e.target) for e in test]
    rows = meaning_scores(refs, refs, [" ".join(e.context[-1]) for e in test], encoder, classifier)
    metrics = meaning_metrics(rows, [EMOTIONS[e.emotion] for e in test])
    assert metrics["sim_reference"] == pytest.approx(1.0, abs=1e-5)  # a reply is its own reference
    assert metrics["reply_emotion_acc"] == metrics["reply_emotion_acc_gold"]
    assert metrics["reply_emotion_acc_gold"] > 2 / len(EMOTIONS), metrics  # chance is 1/32 = 0.031
    generic = meaning_scores(["i am sorry to hear that ."] * len(test), refs, [""] * len(test), encoder, classifier)
    assert meaning_metrics(generic, [EMOTIONS[e.emotion] for e in test])["sim_reference"] < 0.5
