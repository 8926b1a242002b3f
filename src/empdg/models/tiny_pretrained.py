"""A tiny RANDOM pretrained folder (``python -m empdg.make_tiny_pretrained OUT_DIR --family seq2seq|causal``).

Tests and the quickstart need a Hugging Face "pretrained" model without any download, loaded through the
same ``from_pretrained`` path real users take with ``facebook/bart-base`` or ``microsoft/DialoGPT-small``.
This builds one: a byte-level BPE tokenizer trained (with ``tokenizers``) on the normalised built-in
demonstration corpus, and a randomly initialised BART (``seq2seq``) or GPT-2 (``causal``) of a few layers.
The weights are random: the folder exercises the loading and fine-tuning code, it is NOT a language model.

The tokenizer's pre-tokenizer is ``ByteLevel(add_prefix_space=True)``, because the project tokenises text
one word at a time as ``" " + word``; with it, encoding word by word equals encoding the whole line.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

from empdg.errors import UserError

__all__ = ["FAMILIES", "README_MARKER", "SPECIAL_TOKENS", "make_tiny_pretrained", "training_lines"]

FAMILIES = ("seq2seq", "causal")
#: Special tokens in id order: BART's ``<s> <pad> </s> <unk>`` layout, GPT-2's ``<|endoftext|>`` plus a pad.
SPECIAL_TOKENS: dict[str, tuple[str, ...]] = {
    "seq2seq": ("<s>", "<pad>", "</s>", "<unk>"),
    "causal": ("<|endoftext|>", "<pad>"),
}
#: First line of the README written into every folder: marks it as ours, so rebuilding over it is allowed.
README_MARKER = "# Tiny RANDOM model for empdg tests"


def training_lines() -> Iterator[str]:
    """Every situation and utterance of the built-in corpus, normalised as ED text is, words joined by spaces."""
    from empdg.data.builtin import generate_builtin_corpus
    from empdg.data.text import normalize

    for conversations in generate_builtin_corpus().values():
        for conv in conversations:
            for text in (conv.situation, *conv.utterances):
                words = normalize(text)
                if words:
                    yield " ".join(words)


def _train_tokenizer(family: str, vocab_size: int):
    """Byte-level BPE over :func:`training_lines`; the special tokens take ids 0, 1, ... in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = SPECIAL_TOKENS[family]
    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in specials else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(training_lines()), trainer=trainer)
    return tok


def _build_model(family: str, vocab_size: int, layers: int, hidden: int, heads: int, ffn: int, max_positions: int):
    """A randomly initialised BART or GPT-2 sized by the arguments, dropout off (deterministic tests)."""
    if family == "seq2seq":
        from transformers import BartConfig, BartForConditionalGeneration

        config = BartConfig(
            vocab_size=vocab_size, d_model=hidden, encoder_layers=layers, decoder_layers=layers,
            encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn,
            decoder_ffn_dim=ffn, max_position_embeddings=max_positions, pad_token_id=1, bos_token_id=0,
            eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2, scale_embedding=False,
            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        )  # fmt: skip
        return BartForConditionalGeneration(config)
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads, n_inner=ffn, n_positions=max_positions,
        bos_token_id=0, eos_token_id=0, pad_token_id=1, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return GPT2LMHeadModel(config)


def check_out_dir(out_dir: Path, force: bool, marker: str = README_MARKER, what: str = "a tiny model") -> None:
    """Refuse to write into a non-empty folder that is not an earlier build (its README starts with ``marker``),
    unless forced: a model-building command never overwrites someone's files by a wrong OUT_DIR."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder; choose another OUT_DIR")
    if force or not out_dir.exists() or not any(out_dir.iterdir()):
        return
    readme = out_dir / "README.md"
    if readme.is_file() and readme.read_text(encoding="utf-8").startswith(marker):
        return
    raise UserError(
        f"{out_dir} is not empty and does not look like {what} made by this command; "
        "choose an empty or new OUT_DIR, or pass --force to write into it anyway"
    )


def _check_sizes(family: str, vocab_size: int, layers: int, hidden: int, heads: int, ffn: int,
                 max_positions: int) -> None:  # fmt: skip
    if family not in FAMILIES:
        raise UserError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    for name, value in (("layers", layers), ("hidden", hidden), ("heads", heads), ("ffn", ffn),
                        ("max-positions", max_positions)):  # fmt: skip
        if value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")
    if hidden % heads:
        raise UserError(f"--hidden ({hidden}) must be a multiple of --heads ({heads})")
    if vocab_size < 300:  # 256 byte-level symbols + the special tokens, plus room for some merges
        raise UserError(f"--vocab-size must be at least 300 (the 256 byte symbols need room), got {vocab_size}")


def _readme(family: str, command: str, n_params: int, vocab: int) -> str:
    return (
        f"{README_MARKER}\n\n"
        f"This folder holds a tiny, RANDOMLY initialised {'BART' if family == 'seq2seq' else 'GPT-2'} model "
        f"({n_params:,} parameters) and a byte-level BPE tokenizer ({vocab} tokens) trained on empdg's built-in "
        "demonstration corpus. It is NOT a trained language model: its outputs are noise. It exists so tests and "
        "quickstart-sized examples can exercise the `from_pretrained` loading path without a download.\n\n"
        f"Made with:\n\n    {command}\n"
    )


def make_tiny_pretrained(
    out_dir: Path,
    family: str,
    *,
    vocab_size: int = 1000,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    ffn: int = 128,
    max_positions: int = 512,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write the tokenizer, config, ``model.safetensors`` and a README to ``out_dir``; return ``out_dir``.

    The same arguments give the same weights (``torch.manual_seed(seed)`` before building the model).
    """
    import torch
    from transformers import PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    _check_sizes(family, vocab_size, layers, hidden, heads, ffn, max_positions)
    check_out_dir(out_dir, force)

    tok = _train_tokenizer(family, vocab_size)
    specials = SPECIAL_TOKENS[family]
    for index, token in enumerate(specials):  # the configs below hard-code these ids
        assert tok.token_to_id(token) == index, (token, tok.token_to_id(token))
    roles = {"bos_token": specials[0], "eos_token": specials[2 if family == "seq2seq" else 0], "pad_token": "<pad>"}
    if family == "seq2seq":
        roles["unk_token"] = "<unk>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_positions, **roles)

    torch.manual_seed(seed)
    model = _build_model(family, len(fast), layers, hidden, heads, ffn, max_positions)
    n_params = sum(p.numel() for p in model.parameters())

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    command = shlex.join([
        "python", "-m", "empdg.make_tiny_pretrained", str(out_dir), "--family", family,
        "--vocab-size", str(vocab_size), "--layers", str(layers), "--hidden", str(hidden), "--heads", str(heads),
        "--ffn", str(ffn), "--max-positions", str(max_positions), "--seed", str(seed),
    ])  # fmt: skip
    (out_dir / "README.md").write_text(_readme(family, command, n_params, len(fast)), encoding="utf-8")
    print(f"wrote a tiny random {family} model to {out_dir}: {n_params:,} parameters, vocab size {len(fast)}",
          flush=True)  # fmt: skip
    return out_dir
