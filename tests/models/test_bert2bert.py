"""BERT2BERT from the packaged all-MiniLM-L6-v2 (``python -m empdg.make_bert2bert``) and WordPiece in the vocabulary.

The model is built once per session (fixture ``bert2bert``, conftest.py) and loaded the way users load it:
``AutoModelForSeq2SeqLM`` and ``model=hf_seq2seq``. The WordPiece tests read the real ED sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from empdg.commands.make_bert2bert import README_MARKER, main
from empdg.data.dataset import SequenceLimits, collate, encode_example
from empdg.data.ed_csv import read_ed_csv
from empdg.data.emotion_words import get_lexicon
from empdg.data.examples import build_examples
from empdg.data.packaged_weights import MINILM_L6_V2, verified
from empdg.data.text import normalize
from empdg.data.vocab import CLS_ID, EOS_ID, LAB_ID, LST_ID, OFFSET, PAD_ID, SOS_ID, SPK_ID, UNK_ID, SubwordVocab
from empdg.errors import UserError
from empdg.models.base import IMPOSSIBLE_LOG_PROB
from empdg.models.bert2bert import pick_layers
from empdg.models.decoding import DecodingConfig, decode
from empdg.models.registry import build_generator

# BERT's uncased WordPiece ids
BERT_PAD, BERT_UNK, BERT_CLS, BERT_SEP, BERT_MASK = 0, 100, 101, 102, 103


@pytest.fixture(scope="module")
def minilm_vocab() -> SubwordVocab:
    """MiniLM's own tokenizer.json, as packaged: it pads every encoding to 128 and truncates there."""
    return SubwordVocab.from_pretrained(verified(MINILM_L6_V2)["tokenizer.json"].parent, "moel")


@pytest.fixture(scope="module")
def real_valid(real_sample_dir):
    conversations, _ = read_ed_csv(real_sample_dir / "valid.csv")
    return conversations


def piece_strings(vocab: SubwordVocab, word: str) -> list[str]:
    return [vocab.tokens[i] for i in vocab.pieces(word)]


# -- WordPiece behind the vocabulary ---------------------------------------------------------------
def test_one_word_is_its_pieces_never_padded_to_the_tokenizer_files_length(minilm_vocab) -> None:
    packaged = json.loads((verified(MINILM_L6_V2)["tokenizer.json"]).read_text())
    assert packaged["padding"]["strategy"] == {"Fixed": 128}  # what the vocabulary must not apply to a word
    assert piece_strings(minilm_vocab, "happy") == ["happy"]
    assert piece_strings(minilm_vocab, "envious") == ["en", "##vious"]
    assert piece_strings(minilm_vocab, "'s") == ["'", "s"]  # BERT splits punctuation off
    assert minilm_vocab.tokens[BERT_PAD + OFFSET] == "hf:[PAD]"  # a name clash with the project's [PAD]


@pytest.mark.real_data
def test_real_utterance_pieces_follow_the_words_and_carry_their_emotion_flags(minilm_vocab, real_valid) -> None:
    """'... I coudn't help but feel a little envious ...': a typo, a clitic, an emotion word of two pieces."""
    lexicon = get_lexicon()
    examples = build_examples(real_valid[5:6], normalize, lexicon.emotion_words, lexicon.emotion_mask)
    example = next(e for e in examples if "envious" in e.context[0])
    words = example.context[0]
    assert words[words.index("envious") - 3 :][:4] == ["feel", "a", "little", "envious"]
    line = " ".join(words)
    tokenizer = minilm_vocab._tokenizer
    whole = [i + OFFSET for i in tokenizer.encode(line, add_special_tokens=False).ids]
    assert minilm_vocab.encode(words) == whole  # word by word = the whole line
    assert [t for w in ("coud", "n't") for t in piece_strings(minilm_vocab, w)] == ["co", "##ud", "n", "'", "t"]

    # the reply's pieces inherit their word's emotion flag: give a real reply an emotion word of two pieces
    reply = example.target[:3] + ["envious"]
    flags = [0.0, 0.0, 0.0, 1.0]
    example.target, example.target_emotion_mask = reply, flags
    encoded = encode_example(example, minilm_vocab, SequenceLimits())
    expected = [f for w, f in zip(reply, flags) for _ in minilm_vocab.pieces(w)] + [0.0]
    assert encoded.target_emotion_mask == expected and expected[-3:] == [1.0, 1.0, 0.0]
    assert encoded.emotion_context_ids[0] == LAB_ID
    assert minilm_vocab.pieces("envious")[0] in encoded.emotion_context_ids  # the context's emotion words, pieced


def test_a_piece_the_tokenizer_does_not_know_is_the_projects_unk(minilm_vocab) -> None:
    """An emoji is WordPiece's [UNK]: as the project's UNK (which the generator maps to [UNK] and may produce)
    a real reference holding one ("i know you are happy 😊", ED test) has a finite perplexity."""
    assert minilm_vocab.pieces("😊") == [UNK_ID]
    assert minilm_vocab.encode(["you", "are", "happy", "😊"])[-1] == UNK_ID
    assert minilm_vocab.pieces("happy") != [UNK_ID]


def test_detokenised_pieces_give_back_the_ed_words(minilm_vocab) -> None:
    words = ["my", "co-worker", "'s", "dog", "has", "n't", "eaten", "1,000", "treats", "--", "wow", "!"]
    ids = minilm_vocab.encode(words)
    assert minilm_vocab.text(ids + [EOS_ID, OFFSET + 2000]) == "my co-worker 's dog has n't eaten 1,000 treats -- wow!"
    assert minilm_vocab.decode(ids) == words


@pytest.mark.real_data
def test_the_real_valid_split_survives_the_round_trip(minilm_vocab, real_valid) -> None:
    """Measured: 9 of the 874 utterances come back with other words (typos like 'yes.my'); 81 without re-joining."""
    utterances = [normalize(u, "moel") for c in real_valid for u in c.utterances]
    changed = [words for words in utterances if minilm_vocab.decode(minilm_vocab.encode(words)) != words]
    assert len(changed) <= 0.015 * len(utterances), changed[:5]


def test_emotion_pieces_are_whole_words_without_the_continuation_prefix(minilm_vocab) -> None:
    lexicon = get_lexicon()
    found = set(minilm_vocab.emotion_token_ids(lexicon.is_emotion_word))
    for word in ("happy", "afraid", "proud", "lonely"):
        assert minilm_vocab.pieces(word)[0] in found, word
    assert not any(minilm_vocab.tokens[i].startswith("##") for i in found)
    assert minilm_vocab.pieces("envious")[0] not in found  # "en" is not an emotion word


# -- the built model ---------------------------------------------------------------------------
def test_the_encoder_is_minilm_and_only_cross_attention_and_the_head_are_new(bert2bert) -> None:
    minilm = load_file(verified(MINILM_L6_V2)["model.safetensors"])
    built = load_file(bert2bert / "model.safetensors")
    minilm.pop("embeddings.position_ids")  # a buffer (0..511) older transformers saved, not a weight
    for key, value in minilm.items():
        assert torch.equal(built[f"encoder.{key}"], value), key
        if not key.startswith("pooler."):  # the decoder starts from the same weights
            assert torch.equal(built[f"decoder.bert.{key}"], value), key
    new = {key for key in built if key.startswith("decoder.") and key.removeprefix("decoder.bert.") not in minilm}
    assert {key.split(".crossattention.")[0] for key in new if ".crossattention." in key} == {
        f"decoder.bert.encoder.layer.{i}" for i in range(6)
    }
    assert {key for key in new if ".crossattention." not in key} <= {
        "decoder.cls.predictions.bias",
        "decoder.cls.predictions.decoder.bias",
        "decoder.cls.predictions.decoder.weight",
        "decoder.cls.predictions.transform.dense.weight",
        "decoder.cls.predictions.transform.dense.bias",
        "decoder.cls.predictions.transform.LayerNorm.weight",
        "decoder.cls.predictions.transform.LayerNorm.bias",
    }
    readme = (bert2bert / "README.md").read_text()
    assert readme.startswith(README_MARKER) and "49,010,490" in readme and "Apache-2.0" in readme


def test_the_decoder_layers_to_keep() -> None:
    assert pick_layers(6, 2, "spread") == [0, 5] and pick_layers(6, 3, "spread") == [0, 2, 5]
    assert pick_layers(6, 1, "spread") == [0] and pick_layers(6, 6, "spread") == list(range(6))
    assert pick_layers(6, 2, "first") == [0, 1] and pick_layers(6, 2, "last") == [4, 5]
    with pytest.raises(UserError, match="--decoder-layers 7: the checkpoint has 6 layers; give 1 to 6"):
        pick_layers(6, 7, "spread")


@pytest.fixture(scope="module")
def shallow(tmp_path_factory) -> Path:
    """A decoder of 2 of MiniLM's 6 layers (0 and 5), built through the command line."""
    folder = tmp_path_factory.mktemp("shallow") / "b2b"
    main([str(folder), "--decoder-layers", "2"])
    return folder


def test_a_shallow_decoder_starts_from_the_chosen_minilm_layers(shallow) -> None:
    minilm = load_file(verified(MINILM_L6_V2)["model.safetensors"])
    built = load_file(shallow / "model.safetensors")
    for mine, source in ((0, 0), (1, 5)):
        for name in ("attention.self.query.weight", "output.dense.weight", "intermediate.dense.bias"):
            assert torch.equal(
                built[f"decoder.bert.encoder.layer.{mine}.{name}"], minilm[f"encoder.layer.{source}.{name}"]
            )
    assert not any(key.startswith("decoder.bert.encoder.layer.2.") for key in built)
    assert all(f"encoder.encoder.layer.{i}.output.dense.weight" in built for i in range(6))  # the encoder is whole
    config = json.loads((shallow / "config.json").read_text())
    assert (config["decoder"]["num_hidden_layers"], config["encoder"]["num_hidden_layers"]) == (2, 6)
    readme = (shallow / "README.md").read_text()
    assert "cut to 2 of its 6 layers (0, 5)" in readme and "--decoder-layers 2 --decoder-pick spread" in readme


def test_a_shallow_decoder_decodes_the_same_with_and_without_its_cache(shallow) -> None:
    """Loaded as users load it, the cut model's cache holds 2 layers' keys and values."""
    generator, batch = generator_and_batch_of(shallow)
    config = dict(strategy="greedy", max_len=5, min_len=3)
    with torch.no_grad():
        cached = decode(generator, batch, DecodingConfig(**config, use_cache=True))
        uncached = decode(generator, batch, DecodingConfig(**config, use_cache=False))
    assert torch.equal(cached, uncached)


@pytest.fixture(scope="module")
def loaded(bert2bert):
    """Through transformers alone, as a user would."""
    return AutoModelForSeq2SeqLM.from_pretrained(bert2bert).eval(), AutoTokenizer.from_pretrained(bert2bert)


def test_the_decoder_is_causal_and_reads_the_encoder(loaded) -> None:
    model, tokenizer = loaded
    assert type(model).__name__ == "EncoderDecoderModel"
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention
    assert not model.config.encoder.is_decoder
    assert model.decoder.get_output_embeddings().weight is model.decoder.get_input_embeddings().weight
    source = tokenizer("i lost my job today.", return_tensors="pt").input_ids
    reply = tokenizer("i am so sorry to hear that", return_tensors="pt").input_ids
    changed = reply.clone()
    changed[0, 4] = tokenizer.convert_tokens_to_ids("glad")
    with torch.no_grad():
        base = model(input_ids=source, decoder_input_ids=reply).logits
        later = model(input_ids=source, decoder_input_ids=changed).logits
        other_source = model(input_ids=tokenizer("what a lovely day!", return_tensors="pt").input_ids,
                             decoder_input_ids=reply).logits  # fmt: skip
    assert torch.equal(base[:, :4], later[:, :4])  # positions before the change cannot see it
    assert not torch.allclose(base[:, 4:], later[:, 4:])
    assert not torch.allclose(base[:, 0], other_source[:, 0])  # cross-attention: the context matters


def test_special_ids_and_a_tokenizer_that_does_not_pad(bert2bert, loaded) -> None:
    model, tokenizer = loaded
    config = model.config
    assert (config.decoder_start_token_id, config.eos_token_id, config.pad_token_id) == (BERT_CLS, BERT_SEP, BERT_PAD)
    assert tokenizer.convert_ids_to_tokens([BERT_CLS, BERT_SEP, BERT_PAD]) == ["[CLS]", "[SEP]", "[PAD]"]
    saved = json.loads((bert2bert / "tokenizer.json").read_text())
    assert saved["padding"] is None and saved["truncation"] is None
    assert tokenizer.model_max_length == 512 == config.decoder.max_position_embeddings


# -- behind the generator seam (model=hf_seq2seq) ----------------------------------------------
def generator_and_batch_of(folder: Path, **settings):
    """``model=hf_seq2seq`` on a built folder (eval mode) and a batch of built-in examples in its pieces."""
    vocab = SubwordVocab.from_pretrained(folder, "moel")
    lexicon = get_lexicon()
    from empdg.data.builtin import generate_builtin_corpus

    corpus = generate_builtin_corpus(train_per_emotion=1, valid_per_emotion=1, test_per_emotion=1)
    examples = build_examples(corpus["train"][:2], normalize, lexicon.emotion_words, lexicon.emotion_mask)
    batch = collate([encode_example(e, vocab, SequenceLimits(max_context_len=40)) for e in examples[:3]])
    torch.manual_seed(0)
    settings = {"name": "hf_seq2seq", "pretrained": str(folder), **settings}
    return build_generator(settings, len(vocab)).eval(), batch


@pytest.fixture(scope="module")
def generator_and_batch(bert2bert):
    return generator_and_batch_of(bert2bert, emotion_encoder=True)


def test_the_project_specials_map_onto_berts_and_mask_is_never_produced(generator_and_batch) -> None:
    generator, batch = generator_and_batch
    mapped = {PAD_ID: BERT_PAD, UNK_ID: BERT_UNK, SOS_ID: BERT_CLS, EOS_ID: BERT_SEP, CLS_ID: BERT_CLS,
              LAB_ID: BERT_CLS, SPK_ID: BERT_SEP, LST_ID: BERT_SEP}  # fmt: skip
    assert {p: int(generator.project_to_model[p]) for p in mapped} == mapped
    with torch.no_grad():
        log_probs = generator(batch).log_probs
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:-1]), atol=1e-4)
    for model_id in (BERT_MASK, BERT_SEP, BERT_CLS, BERT_PAD):  # [SEP] only as EOS_ID, [MASK] never
        assert (log_probs[..., model_id + OFFSET] <= IMPOSSIBLE_LOG_PROB / 2).all(), model_id
    assert (log_probs[..., EOS_ID] > IMPOSSIBLE_LOG_PROB / 2).all()


def test_the_seams_word_vectors_are_the_decoders(generator_and_batch) -> None:
    """What the decoder reads back and the critics read: the decoder's embedding, not the encoder's copy."""
    generator, _ = generator_and_batch
    decoder_embedding = generator.base_model.decoder.get_input_embeddings()
    assert generator.token_embedding() is decoder_embedding
    assert generator.token_embedding() is not generator.base_model.encoder.get_input_embeddings()
    ids = torch.tensor([OFFSET + 7592, EOS_ID])
    assert torch.equal(generator.word_embedding(ids), decoder_embedding(torch.tensor([7592, BERT_SEP])))


def test_cached_decoding_equals_uncached(generator_and_batch) -> None:
    generator, batch = generator_and_batch
    for strategy, extra in (("greedy", {}), ("beam", {"beam_size": 2})):
        config = dict(strategy=strategy, max_len=5, min_len=3, **extra)
        with torch.no_grad():
            cached = decode(generator, batch, DecodingConfig(**config, use_cache=True))
            uncached = decode(generator, batch, DecodingConfig(**config, use_cache=False))
        assert cached.shape[1] >= 3 and torch.equal(cached, uncached), strategy


def test_lora_finds_berts_attention_projections(bert2bert, generator_and_batch) -> None:
    generator, _ = generator_and_batch
    settings = {"name": "hf_seq2seq", "pretrained": str(bert2bert), "lora_rank": 2}
    adapted = build_generator(settings, generator.sizes.vocab_size)
    trainable = {name for name, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("emotion_head") for name in trainable)
    adapted_layers = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable if "lora_" in name}
    assert adapted_layers == {"query", "value"}  # self- and cross-attention, encoder and decoder
    assert any(".crossattention." in name for name in trainable)


# -- the command ---------------------------------------------------------------------------------
def test_the_command_refuses_an_unrelated_folder_and_an_unknown_source(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as refused:
        main([str(tmp_path)])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not empty" in err and "--force" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written
    with pytest.raises(SystemExit) as refused:
        main([str(tmp_path / "new"), "--source", "bert-base-uncased"])
    assert refused.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main([str(tmp_path / "deep"), "--decoder-layers", "7"])
    assert refused.value.code == 2 and not (tmp_path / "deep").exists()
    assert capsys.readouterr().err == "error: --decoder-layers 7: the checkpoint has 6 layers; give 1 to 6\n"


# -- training through the existing path ----------------------------------------------------------
@pytest.mark.slow
def test_a_few_updates_against_both_critics_then_transformers_loads_the_result(bert2bert, compose_train, tmp_path):
    """model=hf_seq2seq model.pretrained=<the build>: MLE, critic and adversarial updates, EmpDG's emotion parts."""
    from tiny import tiny_hf_overrides

    from empdg.training.run import run_training

    overrides = [
        *tiny_hf_overrides(bert2bert, train=1, valid=1, test=1, batch_size=4),
        "model=hf_seq2seq",
        "model.emotion_encoder=true",
        "logger=none",
        "training.sample_generations=0",
        "training.phases.generator_pretrain=2",
        "training.phases.critic_pretrain=1",
        "training.phases.adversarial=1",
        "adversarial.n_critic=1",  # one cycle: one critic and one generator update
        "adversarial.g_steps=1",
        "trainer.val_check_interval=5",  # one validation (and checkpoint) after the 5 updates
        "data.max_context_len=32",
        "data.max_target_len=10",
        "adversarial.max_gen_len=8",  # the replies the critics judge
        "+data.limit_examples.valid=4",
        "callbacks.checkpoint.monitor=null",  # one checkpoint file (600 MB with Adam's state), not two
    ]
    metrics = run_training(compose_train(*overrides, tiny=False))
    assert all(torch.isfinite(torch.tensor(value)) for value in metrics.values()), metrics
    expected = {"val/subword_ppl", "val/emotion_acc", "wgan/critic/sem_score_gold", "wgan/critic/emo_score_gold"}
    assert expected <= set(metrics)
    run = tmp_path / "run"
    phases = json.loads((run / "throughput.json").read_text())["phases"]
    assert {name: phase["steps"] for name, phase in phases.items()} == {
        "generator_pretrain": 2, "critic_pretrain": 1, "adversarial": 2,
    }  # fmt: skip
    trained = AutoModelForSeq2SeqLM.from_pretrained(run / "hf_model")
    assert type(trained).__name__ == "EncoderDecoderModel" and trained.config.decoder.add_cross_attention
    minilm = load_file(verified(MINILM_L6_V2)["model.safetensors"])
    encoder = trained.encoder.state_dict()
    assert not torch.equal(encoder["encoder.layer.0.attention.self.query.weight"],
                           minilm["encoder.layer.0.attention.self.query.weight"])  # fmt: skip  # it was fine-tuned
    assert (run / "hf_model" / "empdg_heads.safetensors").is_file()
