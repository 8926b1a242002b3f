"""``make_tiny_pretrained``: a tiny random HF folder that loads through the real ``from_pretrained`` path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from empdg.commands.make_tiny_pretrained import README_MARKER, main, make_tiny_pretrained
from empdg.data.text import normalize

SIZES = dict(vocab_size=600, layers=1, hidden=32, heads=4, ffn=64, max_positions=128)
AUTO_MODEL = {"seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM}
# An ED-like raw sentence: a contraction, commas and punctuation, words the built-in corpus may lack.
RAW = "I couldn't believe it, my neighbor's dog ate the whole cake! Can you imagine that?"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """One folder per family, seed 0, built once for the module."""
    return {
        family: make_tiny_pretrained(tmp_path_factory.mktemp(f"tiny-{family}"), family, seed=0, **SIZES)
        for family in AUTO_MODEL
    }


@pytest.fixture(params=list(AUTO_MODEL))
def tiny(request, built) -> tuple[str, Path]:
    return request.param, built[request.param]


@pytest.fixture(scope="module")
def loaded_all(built) -> dict[str, tuple]:
    """Each folder through the same ``from_pretrained`` path users take with a hub model."""
    return {
        family: (AUTO_MODEL[family].from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out))
        for family, out in built.items()
    }


@pytest.fixture(params=list(AUTO_MODEL))
def loaded(request, loaded_all):
    return (request.param, *loaded_all[request.param])


def test_folder_holds_safetensors_tokenizer_and_readme(tiny):
    _, out = tiny
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")), "weights must be saved as safetensors"
    readme = (out / "README.md").read_text()
    assert readme.startswith(README_MARKER)
    assert "NOT a trained language model" in readme and "python -m empdg.make_tiny_pretrained" in readme


def test_forward_gives_logits_over_the_vocabulary(loaded):
    family, model, tok = loaded
    assert len(tok) == SIZES["vocab_size"] == model.config.vocab_size
    ids = tok(" ".join(normalize(RAW)), return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        if family == "seq2seq":
            out = model(input_ids=ids, decoder_input_ids=ids[:, :3])
            assert out.logits.shape == (1, 3, SIZES["vocab_size"])
        else:
            out = model(input_ids=ids)
            assert out.logits.shape == (1, ids.shape[1], SIZES["vocab_size"])
    assert torch.isfinite(out.logits).all()


def test_special_token_ids(loaded):
    family, model, tok = loaded
    cfg = model.config
    if family == "seq2seq":
        assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
        assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
        assert (cfg.bos_token_id, cfg.pad_token_id, cfg.eos_token_id, cfg.decoder_start_token_id) == (0, 1, 2, 2)
        assert cfg.scale_embedding is False and cfg.dropout == 0.0
    else:
        assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 0, 1)
        assert tok.convert_ids_to_tokens([0, 1]) == ["<|endoftext|>", "<pad>"]
        assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (0, 0, 1)
        assert cfg.resid_pdrop == cfg.embd_pdrop == cfg.attn_pdrop == 0.0
    assert tok.model_max_length == SIZES["max_positions"]


def test_per_word_encoding_equals_whole_line_and_decodes_back(loaded):
    _, _, tok = loaded
    words = normalize(RAW)
    assert "," in words and "could" in words  # normalised as ED text: commas split off, contraction expanded
    line = " ".join(words)
    per_word = [i for word in words for i in tok(" " + word, add_special_tokens=False).input_ids]
    whole = tok(line, add_special_tokens=False).input_ids
    assert per_word == whole
    assert len(whole) < len(line)  # BPE merges happened (not one id per byte)
    assert tok.unk_token_id not in whole  # byte-level: nothing is unknown
    assert tok.decode(whole).lstrip(" ") == line


def test_cli_refuses_an_unrelated_non_empty_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--family", "causal"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written


def test_cli_rejects_a_bad_family(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "out"), "--family", "encoder"])
    assert exit_info.value.code == 2


def test_seed_decides_the_weights_and_rebuilding_a_tiny_folder_is_allowed(built, tmp_path, capsys):
    reference = built["causal"]  # one family is enough for the CLI and the seeding
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    args = [str(folder), "--family", "causal", "--force", "--seed", "1"]
    args += [f"--{key.replace('_', '-')}={value}" for key, value in SIZES.items()]
    main(args)  # --force: writes into the unrelated folder
    assert "wrote a tiny random causal model" in capsys.readouterr().out
    expected = load_file(reference / "model.safetensors")
    other_seed = load_file(folder / "model.safetensors")
    assert expected.keys() == other_seed.keys()
    assert any(not torch.equal(expected[k], other_seed[k]) for k in expected)

    make_tiny_pretrained(folder, "causal", seed=0, **SIZES)  # an earlier tiny model: no --force needed
    same_seed = load_file(folder / "model.safetensors")
    assert all(torch.equal(expected[k], same_seed[k]) for k in expected)
    assert (folder / "tokenizer.json").read_text() == (reference / "tokenizer.json").read_text()
