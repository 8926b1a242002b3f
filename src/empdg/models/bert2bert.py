"""A real pretrained encoder-decoder from a BERT checkpoint (``python -m empdg.make_bert2bert OUT_DIR``).

BERT2BERT (Rothe, Narayan and Severyn, TACL 2020): encoder and decoder are both initialised from the same
BERT checkpoint; the decoder's self-attention is made causal (``is_decoder=True``) and every decoder layer
gets a NEW, randomly initialised cross-attention block (``add_cross_attention=True``). Built with
``transformers``' ``EncoderDecoderModel.from_encoder_decoder_pretrained`` and saved in the Hugging Face
format, so ``model=hf_seq2seq model.pretrained=OUT_DIR`` loads it through ``AutoModelForSeq2SeqLM`` like
any other encoder-decoder.

The source is all-MiniLM-L6-v2 from the package registry (``empdg.data.packaged_weights.MINILM_L6_V2``,
digests checked): BERT, 6 layers, 384-d, 12 heads, uncased WordPiece of 30,522 entries.

Choices (what Rothe et al. leave open or what transformers 5 allows):

- Encoder and decoder layers are separate (BERT2BERT, not Rothe's BERTShare, which shares them).
- Encoder and decoder each keep their own copy of MiniLM's word embeddings: the saved
  ``EncoderDecoderModel`` format of transformers 5 cannot tie weights across the two (its
  ``tie_encoder_decoder`` is gone), and a tie made here would be lost on loading. Inside the decoder the
  input and output embeddings are tied, as in BERT's own language-model head.
- MiniLM was distilled and then trained for sentence embeddings: its checkpoint has no language-model
  head, so the head's transform (dense + LayerNorm) and output bias are new, like the cross-attention.
- ``decoder_layers=N`` (a CPU budget): the decoder keeps N of the checkpoint's layers, chosen by
  ``decoder_pick``: ``spread`` (default: evenly spaced, first and last included, as Shleifer and Rush's
  "shrink and fine-tune" copies a teacher's layers), ``first`` or ``last``. The encoder stays whole.
- Ids: ``[CLS]`` starts the decoder and opens the encoder input, ``[SEP]`` ends a reply (eos) and
  separates the turns, ``[PAD]`` pads.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

from empdg.errors import UserError
from empdg.models.tiny_pretrained import check_out_dir

__all__ = ["LAYER_PICKS", "README_MARKER", "SOURCES", "make_bert2bert", "pick_layers"]

#: the BERT checkpoints this command can start from: names of empdg.data.packaged_weights
SOURCES = ("minilm-l6-v2",)
#: how ``decoder_layers`` chooses the checkpoint's layers the decoder keeps
LAYER_PICKS = ("spread", "first", "last")
#: First line of the README written into every folder: marks it as ours, so rebuilding over it is allowed.
README_MARKER = "# BERT2BERT encoder-decoder for empdg"


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide the loading report: the new cross-attention and head weights are missing from the checkpoint by design."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def pick_layers(total: int, keep: int, how: str) -> list[int]:
    """Indices of the ``keep`` of ``total`` layers a shallower decoder starts from (see the module's notes)."""
    if not 1 <= keep <= total:
        raise UserError(f"--decoder-layers {keep}: the checkpoint has {total} layers; give 1 to {total}")
    if how == "first":
        return list(range(keep))
    if how == "last":
        return list(range(total - keep, total))
    if how == "spread":
        return [0] if keep == 1 else [round(i * (total - 1) / (keep - 1)) for i in range(keep)]
    raise UserError(f"unknown --decoder-pick {how!r}; choose one of {', '.join(LAYER_PICKS)}")


def _keep_decoder_layers(model, layers: list[int]) -> None:
    """Cut the decoder down to ``layers`` (in that order) before saving; loading renumbers them (``layer_idx``)."""
    from torch import nn

    stack = model.decoder.bert.encoder
    stack.layer = nn.ModuleList(stack.layer[i] for i in layers)
    for config in (model.config.decoder, model.decoder.config):
        config.num_hidden_layers = len(layers)


def _readme(source: str, distribution: str, licence: str, counts: dict[str, int], command: str,
            layers: list[int]) -> str:  # fmt: skip
    total = counts["decoder_layers_source"]
    kept = (
        "" if len(layers) == total else f" cut to {len(layers)} of its {total} layers ({', '.join(map(str, layers))})"
    )
    return (
        f"{README_MARKER}\n\n"
        f"A BERT2BERT encoder-decoder (Rothe, Narayan and Severyn, TACL 2020) warm-started from `{source}` "
        f"(package {distribution}): the encoder is the checkpoint unchanged; the decoder is the checkpoint{kept} "
        "with causal self-attention and NEW randomly initialised cross-attention in every layer and a new "
        "language-model head transform (the source has none), its output embedding tied to its input "
        "embedding. Encoder and decoder keep separate copies of the word embeddings. It is NOT trained for "
        "generation yet: fine-tune it (`python train.py model=hf_seq2seq model.pretrained=THIS_FOLDER ...`).\n\n"
        f"Parameters: {counts['total']:,} (encoder {counts['encoder']:,}, decoder {counts['decoder']:,}, "
        f"new weights: {counts['new']:,}).\n\n"
        f"Licence of the weights: {licence}.\n\n"
        f"Made with:\n\n    {command}\n"
    )


def make_bert2bert(
    out_dir: Path,
    source: str = "minilm-l6-v2",
    *,
    seed: int = 0,
    force: bool = False,
    decoder_layers: int | None = None,
    decoder_pick: str = "spread",
) -> Path:
    """Write the BERT2BERT model (safetensors), its tokenizer and a README to ``out_dir``; return ``out_dir``.

    ``seed`` decides the new weights (cross-attention, head transform); the same seed gives the same model.
    ``decoder_layers`` (default: all) keeps that many of the checkpoint's layers in the decoder (``decoder_pick``).
    """
    import torch
    from transformers import AutoTokenizer, EncoderDecoderModel

    from empdg.data.packaged_weights import packaged, verified

    started = time.perf_counter()
    out_dir = Path(out_dir)
    if source not in SOURCES:
        raise UserError(f"unknown --source {source!r}; choose one of {', '.join(SOURCES)}")
    check_out_dir(out_dir, force, README_MARKER, "a BERT2BERT model")
    weights = packaged(source)
    folder = str(verified(weights)["config.json"].parent)  # every pinned file checked first

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        # sentence-transformers' file pads and cuts every encoding at 128: not for a generator's tokenizer
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.backend_tokenizer.no_truncation()
        torch.manual_seed(seed)
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(folder, folder)
    total_layers = model.config.decoder.num_hidden_layers
    layers = pick_layers(total_layers, decoder_layers or total_layers, decoder_pick)
    _keep_decoder_layers(model, layers)
    ids = {"decoder_start_token_id": tokenizer.cls_token_id, "bos_token_id": tokenizer.cls_token_id,
           "eos_token_id": tokenizer.sep_token_id, "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    for name, value in ids.items():
        setattr(model.config, name, value)
        setattr(model.generation_config, name, value)
    source_keys = {"encoder." + k for k in model.encoder.state_dict()} | {
        "decoder.bert." + k for k in model.encoder.state_dict()
    }
    counts = {
        "encoder": sum(p.numel() for p in model.encoder.parameters()),
        "decoder": sum(p.numel() for p in model.decoder.parameters()),
        "total": sum(p.numel() for p in model.parameters()),
        "new": sum(p.numel() for name, p in model.named_parameters() if name not in source_keys),
        "decoder_layers_source": total_layers,
    }

    out_dir.mkdir(parents=True, exist_ok=True)
    with _quiet_transformers():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    shallow = ["--decoder-layers", str(len(layers)), "--decoder-pick", decoder_pick] if decoder_layers else []
    command = shlex.join(["python", "-m", "empdg.make_bert2bert", str(out_dir), "--source", source,
                          "--seed", str(seed), *shallow])  # fmt: skip
    readme = _readme(source, f"{weights.distribution}=={weights.version}", weights.licence, counts, command, layers)
    (out_dir / "README.md").write_text(readme, encoding="utf-8")
    print(f"wrote a BERT2BERT model from {source} to {out_dir}: {counts['total']:,} parameters "
          f"({counts['new']:,} new), {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    return out_dir
