"""The EmpDG generator and its baselines: shapes, masking, causality, switches, copying, settings."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny import tiny_generator

from empdg.data.dataset import SequenceLimits, collate, encode_example
from empdg.data.examples import LISTENER, SPEAKER, DialogueExample
from empdg.data.vocab import SPECIAL_TOKENS, UNK_ID, Vocab
from empdg.models.decoding import greedy_decode
from empdg.models.empdg import EmpDGGenerator, EmpDGSettings

WORDS = [
    "i",
    "lost",
    "my",
    "dog",
    "so",
    "sad",
    "sorry",
    "to",
    "hear",
    "that",
    "thanks",
    ".",
    "you",
    "are",
    "what",
    "happened",
]
VOCAB = Vocab(list(SPECIAL_TOKENS) + WORDS)
TINY = {"emb_dim": 16, "hidden_dim": 16, "attn_dim": 8, "ff_dim": 24, "num_heads": 2, "num_emotions": 32}
# the switches of conf/model/{empdg,transformer,emoprepend}.yaml
MODELS = {
    "empdg": {"emotion_classifier": True, "emotion_encoder": True, "emotion_injection": "projection"},
    "transformer": {"emotion_classifier": False, "emotion_encoder": False, "emotion_injection": "none"},
    "emoprepend": {"emotion_classifier": True, "emotion_encoder": False, "emotion_injection": "label_embedding"},
}


def _example(context, target, emotion_words, emotion=3) -> DialogueExample:
    return DialogueExample(
        example_id="x",
        emotion=emotion,
        situation=[],
        context=context,
        context_roles=[SPEAKER if i % 2 == 0 else LISTENER for i in range(len(context))],
        target=target,
        feedback=None,
        context_emotion_words=emotion_words,
        target_emotion_mask=[0] * len(target),
        feedback_emotion_words=[],
    )


def make_batch() -> dict:
    """Three examples of different lengths (so every sequence field has padding) and two OOV words."""
    examples = [
        _example([["i", "lost", "rex", "my", "dog"]], ["sorry", "rex", "."], ["lost"], emotion=27),
        _example([["so", "sad"], ["what", "happened", "."], ["i", "lost", "my", "dog", "bingo"]], ["sorry"], [], 3),
        _example([["thanks"]], ["you", "are", "sad", "to", "hear", "that", "."], ["sad", "lost", "sad"], emotion=5),
    ]
    return collate([encode_example(e, VOCAB, SequenceLimits()) for e in examples])


def make_model(kind: str = "empdg", seed: int = 0, **overrides) -> EmpDGGenerator:
    sizes = {**TINY, **MODELS[kind]}
    return tiny_generator(EmpDGGenerator, EmpDGSettings, sizes, len(VOCAB), seed=seed, sharpen=1, **overrides)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("copy", [False, True])
def test_output_shapes(kind: str, copy: bool) -> None:
    batch = make_batch()
    model = make_model(kind, copy=copy)
    out = model(batch)
    b, t = batch["target_ids"].shape
    width = len(VOCAB) + (batch["max_oov"] if copy else 0)
    assert out.log_probs.shape == (b, t, width)
    assert torch.isfinite(out.log_probs).all()
    assert torch.allclose(out.log_probs.exp().sum(-1), torch.ones(b, t), atol=1e-5)
    enc = out.encoded
    assert enc.x0.shape == (b, TINY["hidden_dim"])
    assert enc.state.first_input.shape == (b, TINY["hidden_dim"])
    if kind == "transformer":
        assert enc.emotion_logits is None
    else:
        assert enc.emotion_logits.shape == (b, 32)
    if kind == "empdg":
        t_mem = batch["context_ids"].shape[1] + batch["emotion_context_ids"].shape[1]
        assert enc.w0.shape == (b, TINY["hidden_dim"])
    else:
        t_mem = batch["context_ids"].shape[1]
        assert enc.w0 is None
    assert enc.state.memory.shape == (b, t_mem, TINY["hidden_dim"])
    assert enc.state.memory_pad_mask.shape == (b, t_mem)


@pytest.mark.parametrize("kind", list(MODELS))
def test_padding_is_never_attended(kind: str) -> None:
    batch = make_batch()
    model = make_model(kind, copy=True)
    reference = model(batch)
    changed = dict(batch)
    for field in ("context_ids", "context_state", "emotion_context_ids", "target_ids"):
        mask = batch[field.replace("_ids", "").replace("_state", "") + "_pad_mask"]
        assert mask.any(), field  # the batch really has padding there
        changed[field] = batch[field].masked_fill(mask, VOCAB.token_to_id("dog"))
    changed["context_ext_ids"] = batch["context_ext_ids"].masked_fill(batch["context_pad_mask"], 9)
    out = model(changed)
    real = ~batch["target_pad_mask"]
    torch.testing.assert_close(out.log_probs[real], reference.log_probs[real])
    torch.testing.assert_close(out.encoded.x0, reference.encoded.x0)
    if kind != "transformer":
        torch.testing.assert_close(out.encoded.emotion_logits, reference.encoded.emotion_logits)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("copy", [False, True])
def test_decoder_is_causal(kind: str, copy: bool) -> None:
    batch = make_batch()
    model = make_model(kind, copy=copy)
    reference = model(batch).log_probs
    length = batch["target_ids"].shape[1]
    for t in range(length - 2):
        changed = dict(batch)
        ids = batch["target_ids"].clone()
        ids[:, t + 1] = VOCAB.token_to_id("what")
        changed["target_ids"] = ids
        out = model(changed).log_probs
        # position p predicts token p from inputs 0..p (the first input and tokens < p)
        torch.testing.assert_close(out[:, : t + 2], reference[:, : t + 2])
        assert not torch.allclose(out[:, t + 2 :], reference[:, t + 2 :])


def test_without_emotion_encoder_memory_is_the_context_only() -> None:
    batch = make_batch()
    model = make_model("empdg", emotion_encoder=False)
    assert model.emotion_encoder is None
    assert not any(name.startswith("emotion_encoder") for name, _ in model.named_parameters())
    full = make_model("empdg")
    assert any(name.startswith("emotion_encoder") for name, _ in full.named_parameters())
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < sum(p.numel() for p in full.parameters())

    enc = model.encode(batch)
    assert enc.w0 is None
    assert enc.state.memory.shape[1] == batch["context_ids"].shape[1]
    assert torch.equal(enc.state.memory_pad_mask, batch["context_pad_mask"])
    # C_u is the semantic encoder's output
    semantic_in = model.embedding(batch["context_ids"]) + model.embedding(batch["context_state"])
    c_u = model.semantic_encoder(model._to_hidden(semantic_in), batch["context_pad_mask"])
    torch.testing.assert_close(enc.state.memory, c_u)
    # the classifier reads x̃0 only
    assert model.emotion_classifier.in_features == TINY["hidden_dim"]
    assert full.emotion_classifier.in_features == 2 * TINY["hidden_dim"]
    torch.testing.assert_close(enc.emotion_logits, model.emotion_classifier(c_u[:, 0]))
    # and the emotion words no longer matter at all
    changed = dict(batch)
    changed["emotion_context_ids"] = batch["emotion_context_ids"].flip(0)
    changed["emotion_context_pad_mask"] = batch["emotion_context_pad_mask"].flip(0)
    torch.testing.assert_close(model(changed).log_probs, model(batch).log_probs)


def test_full_model_reads_the_emotion_words() -> None:
    batch = make_batch()
    model = make_model("empdg")
    changed = dict(batch)
    changed["emotion_context_ids"] = batch["emotion_context_ids"].masked_fill(
        ~batch["emotion_context_pad_mask"] & batch["emotion_context_ids"].ne(5), VOCAB.token_to_id("thanks")
    )
    assert not torch.equal(changed["emotion_context_ids"], batch["emotion_context_ids"])
    assert not torch.allclose(model.encode(changed).emotion_logits, model.encode(batch).emotion_logits)


def test_transformer_baseline_has_no_emotion_parts() -> None:
    model = make_model("transformer")
    assert model.emotion_classifier is None
    assert model.emotion_encoder is None
    assert model.emotion_projection is None and model.emotion_embedding is None
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.startswith("emotion") for name in names)
    # the decoder starts from the SOS embedding
    enc = model.encode(make_batch())
    sos = model.embedding_projection(model.embedding.weight[2]).expand_as(enc.state.first_input)
    torch.testing.assert_close(enc.state.first_input, sos)


def test_emoprepend_starts_from_the_predicted_label_embedding() -> None:
    model = make_model("emoprepend")
    assert model.emotion_embedding is not None and model.emotion_projection is None
    assert model.emotion_encoder is None
    enc = model.encode(make_batch())
    expected = model.emotion_embedding.weight[enc.emotion_logits.argmax(-1)]
    torch.testing.assert_close(enc.state.first_input, expected)


def test_empdg_injects_the_projected_emotion_signal() -> None:
    model = make_model("empdg")
    enc = model.encode(make_batch())
    torch.testing.assert_close(enc.state.first_input, model.emotion_projection(enc.emotion_logits))


def test_copy_mechanism_normalises_over_the_extended_vocabulary_and_copies_oovs() -> None:
    batch = make_batch()
    assert batch["oovs"][0] == ["rex"] and batch["oovs"][1] == ["bingo"]
    for kind in ("empdg", "emoprepend", "transformer"):
        model = make_model(kind, copy=True)
        log_probs = model(batch).log_probs
        n = len(VOCAB)
        assert log_probs.shape[-1] == n + 1
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
        # an OOV word of the context can be produced: it has real probability at every step
        assert (log_probs[0, :, n].exp() > 1e-6).all(), kind
        assert (log_probs[1, :, n].exp() > 1e-6).all(), kind
        # an example without OOV words puts nothing on the extra slot
        assert (log_probs[2, :, n].exp() < 1e-9).all(), kind
        # the copied target word's extended id is scored (finite, non-negligible NLL)
        target_ext = batch["target_ext_ids"]
        assert target_ext[0, 1] == n
        assert log_probs[0, 1].gather(-1, target_ext[0, 1:2]).exp() > 1e-6


def test_without_copy_oov_words_are_unk() -> None:
    model = make_model("empdg", copy=False)
    log_probs = model(make_batch()).log_probs
    assert log_probs.shape[-1] == len(VOCAB)
    assert make_batch()["target_ids"][0, 1] == UNK_ID


def test_tie_embeddings_shares_the_weight() -> None:
    model = make_model("empdg", tie_embeddings=True)
    assert model.output.weight is model.embedding.weight
    untied = make_model("empdg")
    assert untied.output.weight is not untied.embedding.weight
    n_tied = sum(p.numel() for p in model.parameters())
    assert n_tied == sum(p.numel() for p in untied.parameters()) - len(VOCAB) * TINY["hidden_dim"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"num_heads": 3}, "model.num_heads"),
        ({"hidden_dim": 18, "emb_dim": 18, "attn_dim": 8, "num_heads": 4}, "model.hidden_dim"),
        ({"attn_dim": 9}, "model.attn_dim"),
        ({"tie_embeddings": True, "emb_dim": 8}, "model.tie_embeddings"),
        ({"emotion_injection": "bogus"}, "model.emotion_injection"),
        ({"emotion_classifier": False}, "model.emotion_classifier"),
        ({"hidden_dim": 0}, "model.hidden_dim"),
        ({"dropout": 1.0}, "model.dropout"),
    ],
)
def test_invalid_settings_name_the_key(overrides: dict, key: str) -> None:
    values = {**TINY, **MODELS["empdg"], **overrides}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        EmpDGSettings(**values)


def test_a_vocabulary_of_special_tokens_only_is_refused() -> None:
    with pytest.raises(ValueError, match="min_count"):
        EmpDGGenerator(EmpDGSettings(**TINY), vocab_size=len(SPECIAL_TOKENS))


def test_sizes_describe_the_model_for_its_callers() -> None:
    for kind in MODELS:
        model = make_model(kind, copy=kind == "emoprepend")
        sizes = model.sizes
        assert (sizes.vocab_size, sizes.emb_dim, sizes.hidden_dim, sizes.num_emotions) == (len(VOCAB), 16, 16, 32)
        assert sizes.has_emotion_classifier == (kind != "transformer")
        assert sizes.copy == (kind == "emoprepend")
        assert model.word_embedding is model.embedding
        ids = torch.tensor([[4, len(VOCAB) + 1]])  # an extended (copied) id reads as UNK
        torch.testing.assert_close(model.embed_tokens(ids), model.embedding.weight[[4, UNK_ID]].unsqueeze(0))


def test_settings_from_mapping_types_the_values() -> None:
    values = {**TINY, **MODELS["emoprepend"], "dropout": 0}
    settings = EmpDGSettings.from_mapping(values)
    assert settings.emotion_injection == "label_embedding"
    assert settings.dropout == 0.0 and isinstance(settings.dropout, float)
    assert dataclasses.asdict(settings)["hidden_dim"] == 16


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("copy", [False, True])
def test_cached_and_uncached_greedy_decoding_agree(kind: str, copy: bool) -> None:
    batch = make_batch()
    for seed in range(3):
        model = make_model(kind, seed=seed, copy=copy, num_layers=2)
        cached = greedy_decode(model, batch, max_len=12, use_cache=True)
        uncached = greedy_decode(model, batch, max_len=12, use_cache=False)
        assert cached.shape[0] == 3 and 1 <= cached.shape[1] <= 12
        assert torch.equal(cached, uncached)
