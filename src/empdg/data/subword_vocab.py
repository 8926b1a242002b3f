"""The vocabulary a checkpoint describes (its ``vocab_spec`` and token list), word or subword."""

from __future__ import annotations

from empdg.data.vocab import SubwordVocab, Vocab


def vocab_from_spec(spec: dict | None, tokens: list[str]) -> Vocab:
    """The vocabulary a checkpoint describes: subword when it stored a tokenizer, else its word list."""
    if spec and spec.get("kind") == "subword":
        vocab = SubwordVocab(spec["tokenizer_json"], spec.get("normalization", "moel"))
        if tokens and list(tokens) != vocab.tokens:
            raise ValueError("the checkpoint's tokenizer does not match its stored token list (file edited?)")
        return vocab
    return Vocab(tokens)
