"""What the two pretrained-generator families share: loading, the id map, the emotion machinery, LoRA.

A Hugging Face model keeps its own token ids; the project's vocabulary (:class:`empdg.data.vocab.SubwordVocab`)
has its eight special ids first and tokenizer id ``k`` at ``k + 8``. :class:`PretrainedGenerator` maps
project ids to the model's ids on the way in (the specials onto the tokenizer's pad, eos, bos and turn
separators) and the model's logits back to project ids on the way out, so training, the critics,
decoding and evaluation see the same interface as for the word-level models. Every model id appears
once in the output distribution: the model's own special tokens are reachable only through the
project's specials (its eos only as ``EOS_ID``), the project's structural ids never (log-prob ``IMPOSSIBLE_LOG_PROB``).

EmpDG on top: an emotion classifier on the dialogue summary, and optionally EmpDG's emotion encoder
over the context's emotion words (a small transformer encoder on the model's own word vectors) whose
states the decoder reads -- as extra cross-attention memory (seq2seq) or as a prefix (causal).
The critics read the model's input word vectors (:attr:`Generator.word_embedding`).

``transformers`` and ``peft`` are imported when a pretrained generator is built, never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from empdg.data.vocab import CLS_ID, EOS_ID, LAB_ID, LST_ID, OFFSET, PAD_ID, SOS_ID, SPK_ID, UNK_ID
from empdg.errors import ConfigError, UserError
from empdg.models.base import IMPOSSIBLE_LOG_PROB, Generator, GeneratorSizes
from empdg.models.settings import GeneratorSettings

_SIZE_KEYS = ("emb_dim", "hidden_dim", "num_layers", "num_heads", "attn_dim", "ff_dim", "max_positions")


def _require_hf():
    try:
        import transformers
    except ImportError as error:  # pragma: no cover - part of the dev install
        raise ImportError("pretrained generators need the Hugging Face extras: pip install 'empdg[hf]'") from error
    return transformers


class PretrainedNotFoundError(UserError, OSError):
    """``model.pretrained`` is no model folder and no reachable hub name (an ``OSError``, as transformers' own)."""


def _explain_missing(pretrained: str, error: Exception) -> PretrainedNotFoundError:
    local = Path(pretrained).expanduser()
    detail = " ".join(str(error).split())[:300]  # transformers' messages span lines; the user error is one
    if local.exists():
        return PretrainedNotFoundError(
            f"model.pretrained={pretrained}: {local} exists but is not a Hugging Face model folder (the files "
            f"save_pretrained() writes: config.json, the weights, tokenizer.json) ({detail})"
        )
    return PretrainedNotFoundError(
        f"model.pretrained={pretrained!r} is neither a local folder nor reachable on the Hugging Face hub "
        f"(no network?): download it once where there is network (huggingface-cli download {pretrained} "
        f"--local-dir DIR) and set model.pretrained=DIR, or make a tiny offline one with "
        f"python -m empdg.make_tiny_pretrained DIR --family seq2seq|causal  ({type(error).__name__}: {detail})"
    )


def load_tokenizer_json(pretrained: str) -> str:
    """The fast tokenizer of ``pretrained`` (folder or hub name) as ``tokenizers`` JSON."""
    transformers = _require_hf()
    folder = Path(pretrained).expanduser()
    if (folder / "tokenizer.json").exists():
        return (folder / "tokenizer.json").read_text(encoding="utf-8")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained)
    except (OSError, ValueError) as error:
        raise _explain_missing(pretrained, error) from error
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"model.pretrained={pretrained}: its tokenizer has no fast (tokenizers) version")
    return tokenizer.backend_tokenizer.to_str()


@dataclass
class PretrainedSettings(GeneratorSettings):
    """A Hugging Face checkpoint plus EmpDG's emotion machinery; sizes come from the checkpoint.

    The inherited transformer sizes (``emb_dim``, ``hidden_dim``, ...) have no effect and must stay at
    their defaults: the checkpoint decides them.
    """

    pretrained: str = ""  # a local folder (save_pretrained layout) or a hub name
    emotion_classifier: bool = True  # emotion head on the dialogue summary, trained jointly
    emotion_encoder: bool = False  # EmpDG's emotion encoder over the context's emotion words feeds the decoder
    emotion_layers: int = 1
    emotion_heads: int = 2
    speaker_token: Optional[str] = None  # the tokenizer's token before a speaker turn (default: its eos)
    listener_token: Optional[str] = None  # ... before a listener turn, and before the reply (default: its eos)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, more time
    freeze_encoder: bool = False  # hf_seq2seq: the encoder's weights stay fixed, no gradient flows into it
    lora_rank: int = 0  # > 0: train LoRA adapters of this rank (peft) instead of every weight
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: Optional[list[str]] = None  # module names to adapt (default: the family's attention projections)

    def problems(self) -> list[str]:
        problems = []
        defaults = GeneratorSettings()
        changed = [f"model.{key}" for key in _SIZE_KEYS if getattr(self, key) != getattr(defaults, key)]
        if changed:  # one problem: experiment=quickstart sets four of them at once
            problems.append(
                f"{', '.join(changed)} {'has' if len(changed) == 1 else 'have'} no effect on a pretrained generator "
                "(its sizes come from model.pretrained): remove the override (experiment=quickstart sets them for "
                "the word-level models; with a pretrained model use experiment=hf_quickstart)"
            )
        if not self.pretrained:
            problems.append("model.pretrained is empty: give a Hugging Face model folder or hub name")
        if self.copy:
            problems.append("model.copy=true: pretrained generators have no copy mechanism")
        if self.num_emotions < 2:
            problems.append(f"model.num_emotions={self.num_emotions} must be >= 2")
        if self.emotion_layers < 1 or self.emotion_heads < 1:
            problems.append("model.emotion_layers and model.emotion_heads must be >= 1")
        if self.lora_rank < 0:
            problems.append(f"model.lora_rank={self.lora_rank} must be >= 0 (0: full fine-tuning)")
        if not 0.0 <= self.lora_dropout < 1.0:
            problems.append(f"model.lora_dropout={self.lora_dropout} must be in [0, 1)")
        return problems


class MappedEmbedding(nn.Module):
    """The model's input embedding read with project ids; ``weight`` is [project vocab, emb_dim].

    It reads the generator's embedding and id map when called (not copies taken at construction):
    ``.to(device)`` replaces the generator's buffers, and this view must follow.
    """

    def __init__(self, owner: PretrainedGenerator) -> None:
        super().__init__()
        object.__setattr__(self, "owner", owner)  # not a submodule: the weights belong to the generator

    @property
    def weight(self) -> Tensor:
        # the rows as the embedding returns them (BART-style scaled embeddings multiply inside forward)
        return self.owner.token_embedding()(self.owner.project_to_model)

    def forward(self, ids: Tensor) -> Tensor:
        return self.owner.token_embedding()(self.owner.project_to_model[ids])


class EmotionEncoder(nn.Module):
    """EmpDG's emotion encoder for a pretrained generator: a transformer encoder over the emotion words.

    Reads the model's own word vectors of ``[LAB] w_1 .. w_e``; its states feed the decoder, the state
    at [LAB] is w̃0 (the emotional critic's condition).
    """

    def __init__(self, emb_dim: int, hidden_dim: int, layers: int, heads: int) -> None:
        super().__init__()
        if hidden_dim % heads:
            raise ConfigError(f"model.emotion_heads={heads} must divide the checkpoint's hidden size {hidden_dim}")
        self.project = nn.Linear(emb_dim, hidden_dim) if emb_dim != hidden_dim else nn.Identity()
        layer = nn.TransformerEncoderLayer(hidden_dim, heads, 2 * hidden_dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, vectors: Tensor, pad_mask: Tensor) -> Tensor:
        return self.encoder(self.project(vectors), src_key_padding_mask=pad_mask)


class PretrainedGenerator(Generator):
    """Base of ``hf_seq2seq`` and ``hf_causal``: a Hugging Face model behind the generator seam."""

    settings_class = PretrainedSettings
    auto_class: str = ""  # the transformers Auto class that loads this family

    def __init__(self, settings: PretrainedSettings, vocab_size: int) -> None:
        transformers = _require_hf()
        auto = getattr(transformers, self.auto_class)
        try:
            model = auto.from_pretrained(settings.pretrained)
        except (OSError, ValueError) as error:
            raise _explain_missing(settings.pretrained, error) from error
        model.train()  # from_pretrained returns eval mode; the module's train()/eval() decides from here
        config = _decoder_config(model.config)
        hidden = int(getattr(config, "d_model", None) or getattr(config, "hidden_size", None) or config.n_embd)
        emb_dim = int(model.get_input_embeddings().embedding_dim)
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        sizes = GeneratorSizes(
            vocab_size=vocab_size,
            num_emotions=settings.num_emotions,
            emb_dim=emb_dim,
            hidden_dim=hidden,
            max_positions=int(positions) if positions else None,
            has_emotion_classifier=settings.emotion_classifier,
            copy=False,
        )
        super().__init__(settings, sizes)
        model_vocab = model.get_input_embeddings().num_embeddings
        if vocab_size - OFFSET > model_vocab:
            raise ConfigError(
                f"the tokenizer of model.pretrained={settings.pretrained} has {vocab_size - OFFSET} tokens but the "
                f"model only {model_vocab} embeddings: tokenizer and model do not belong together"
            )
        if settings.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.hf = self._with_lora(model, settings)
        if settings.freeze_encoder:
            self._freeze_encoder()
        self._build_id_maps(settings, vocab_size)
        self.emotion_encoder = (
            EmotionEncoder(emb_dim, hidden, settings.emotion_layers, settings.emotion_heads)
            if settings.emotion_encoder
            else None
        )
        summary = hidden * (2 if settings.emotion_encoder else 1)
        self.emotion_head = nn.Linear(summary, settings.num_emotions) if settings.emotion_classifier else None
        object.__setattr__(self, "_mapped_embedding", MappedEmbedding(self))  # a view, not a submodule

    # -- construction ----------------------------------------------------------------------
    def _with_lora(self, model: nn.Module, settings: PretrainedSettings) -> nn.Module:
        if settings.lora_rank == 0:
            return model
        try:
            import peft
        except ImportError as error:  # pragma: no cover
            raise ImportError("model.lora_rank > 0 needs peft: pip install 'empdg[hf]'") from error
        targets = settings.lora_targets or self.default_lora_targets(model)
        config = peft.LoraConfig(
            r=settings.lora_rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
            target_modules=list(targets),
        )  # fmt: skip
        try:
            return peft.get_peft_model(model, config)
        except ValueError as error:
            raise ConfigError(f"model.lora_targets={list(targets)}: {error}") from error

    def default_lora_targets(self, model: nn.Module) -> list[str]:
        raise NotImplementedError

    def _freeze_encoder(self) -> None:
        encoder = self.encoder_module()
        if encoder is None:
            raise ConfigError("model.freeze_encoder=true: a decoder-only model has no encoder; use model=hf_seq2seq")
        # a word embedding the decoder shares (BART, T5) keeps training through the decoder
        shared = {id(p) for p in self.decoder_module().parameters()}
        for parameter in encoder.parameters():
            if id(parameter) not in shared:
                parameter.requires_grad_(False)

    def freeze_word_embeddings(self) -> None:
        """Keep the checkpoint's word vectors fixed (``model.embeddings.freeze=true``): every copy, the encoder's
        and the decoder's, and an output layer tied to them; a head's own transform and bias still train."""
        for embedding in (self.hf.get_input_embeddings(), self.token_embedding()):
            embedding.weight.requires_grad_(False)

    def encoder_module(self) -> nn.Module | None:
        """The encoder of an encoder-decoder; None for a decoder-only model."""
        return None

    def _token_id(self, tokenizer: Any, token: str | None, fallback: int, key: str) -> int:
        if token is None:
            return fallback
        index = tokenizer.token_to_id(token)
        if index is None:
            raise ConfigError(f"model.{key}={token!r} is not a token of model.pretrained's tokenizer")
        return int(index)

    def _build_id_maps(self, settings: PretrainedSettings, vocab_size: int) -> None:
        """``project_to_model`` (input ids) and ``output_mask`` (0 or IMPOSSIBLE_LOG_PROB per project id)."""
        from tokenizers import Tokenizer

        config = self.base_model.config
        tokenizer = Tokenizer.from_str(load_tokenizer_json(settings.pretrained))
        eos = _special_id(config, "eos_token_id")
        if eos is None:
            raise ConfigError(f"model.pretrained={settings.pretrained}: its config.json names no eos_token_id")
        eos = int(eos[0] if isinstance(eos, (list, tuple)) else eos)
        bos = _special_id(config, "bos_token_id")
        bos = int(bos if bos is not None else eos)
        pad = _special_id(config, "pad_token_id")
        pad = int(pad if pad is not None else eos)
        start = _special_id(config, "decoder_start_token_id")
        start = int(start if start is not None else bos)
        unk_token = getattr(tokenizer.model, "unk_token", None)
        unk = tokenizer.token_to_id(unk_token) if unk_token else None
        # the tokenizer's other special tokens (BERT's [MASK], BART's <mask>) mean nothing in a reply
        unmapped = {int(i) for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
        speaker = self._token_id(tokenizer, settings.speaker_token, eos, "speaker_token")
        listener = self._token_id(tokenizer, settings.listener_token, eos, "listener_token")
        specials = {PAD_ID: pad, UNK_ID: unk if unk is not None else pad, SOS_ID: start, EOS_ID: eos,
                    CLS_ID: bos, LAB_ID: bos, SPK_ID: speaker, LST_ID: listener}  # fmt: skip
        table = torch.arange(vocab_size) - OFFSET
        for project, model_id in specials.items():
            table[project] = model_id
        mask = torch.zeros(vocab_size)
        structural = [PAD_ID, SOS_ID, CLS_ID, LAB_ID, SPK_ID, LST_ID] + ([] if unk is not None else [UNK_ID])
        mask[structural] = IMPOSSIBLE_LOG_PROB
        for model_id in set(specials.values()):  # reachable only through the project's own special id
            if 0 <= model_id < vocab_size - OFFSET:
                mask[model_id + OFFSET] = IMPOSSIBLE_LOG_PROB
        for model_id in unmapped - set(specials.values()):
            if 0 <= model_id < vocab_size - OFFSET:
                mask[model_id + OFFSET] = IMPOSSIBLE_LOG_PROB
        self.register_buffer("project_to_model", table, persistent=False)
        self.register_buffer("output_mask", mask, persistent=False)
        self.special_ids = {
            "pad": pad,
            "eos": eos,
            "bos": bos,
            "start": start,
            "speaker": speaker,
            "listener": listener,
        }

    # -- shared pieces ---------------------------------------------------------------------
    @property
    def base_model(self) -> nn.Module:
        """The Hugging Face model itself (under the LoRA wrapper when there is one)."""
        return self.hf.get_base_model() if hasattr(self.hf, "get_base_model") else self.hf

    def token_embedding(self) -> nn.Module:
        """The model's embedding of the tokens the decoder reads (those of the reply); model ids."""
        return self.hf.get_input_embeddings()

    @property
    def word_embedding(self) -> MappedEmbedding:
        return self._mapped_embedding

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self._mapped_embedding(ids.clamp(max=self.sizes.vocab_size - 1))

    def project_log_probs(self, logits: Tensor) -> Tensor:
        """Model logits [..., model vocab] -> log-probs over the project's ids [..., vocab_size]."""
        projected = logits.float().index_select(-1, self.project_to_model) + self.output_mask
        return torch.log_softmax(projected, dim=-1)

    def emotion_states(self, batch: dict) -> tuple[Tensor, Tensor] | None:
        """The emotion encoder's states and padding mask over ``[LAB] w_1 .. w_e``, when it is on."""
        if self.emotion_encoder is None:
            return None
        pad = batch["emotion_context_pad_mask"]
        states = self.emotion_encoder(self.embed_tokens(batch["emotion_context_ids"]), pad)
        return states, pad

    def classify(self, x0: Tensor, w0: Tensor | None) -> Tensor | None:
        if self.emotion_head is None:
            return None
        return self.emotion_head(x0 if w0 is None else torch.cat([x0, w0], dim=-1))

    def decoder_parameters(self) -> list[nn.Parameter]:
        decoder = self.decoder_module()
        return [p for p in decoder.parameters() if p.requires_grad]

    def decoder_module(self) -> nn.Module:
        raise NotImplementedError

    # -- Hugging Face format ---------------------------------------------------------------
    def save_hf(self, folder: str | Path, tokenizer_json: str | None = None) -> Path:
        """The fine-tuned language model in the Hugging Face format (safetensors), LoRA merged.

        ``transformers`` alone loads it (``AutoModelFor...from_pretrained(folder)``); the EmpDG parts
        (emotion head and encoder) are in ``empdg_heads.safetensors`` beside it.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.hf
        if hasattr(model, "merge_and_unload"):  # LoRA: a plain model with the adapters folded in
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(folder)
        if tokenizer_json is not None:
            self._save_tokenizer(folder, tokenizer_json)
        heads = {k: v for k, v in self.state_dict().items() if k.startswith(("emotion_head.", "emotion_encoder."))}
        if heads:
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in heads.items()}, str(folder / "empdg_heads.safetensors")
            )
        return folder

    def _save_tokenizer(self, folder: Path, tokenizer_json: str) -> None:
        transformers = _require_hf()
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(tokenizer_json)
        # by role, so one token in two roles (GPT-2's bos = eos) keeps both
        special = {f"{role}_token": tokenizer.id_to_token(self.special_ids[role]) for role in ("eos", "bos", "pad")}
        transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special).save_pretrained(folder)


def _decoder_config(config: Any) -> Any:
    """The config that sizes the decoder: the decoder's own in a composite encoder-decoder (BERT2BERT)."""
    decoder = getattr(config, "decoder", None)
    return decoder if hasattr(decoder, "to_dict") else config


def _special_id(config: Any, name: str) -> Any:
    """A special token id of the config, else of its decoder's (a composite encoder-decoder), else None."""
    value = getattr(config, name, None)
    if value is None and config is not _decoder_config(config):
        value = getattr(_decoder_config(config), name, None)
    return value


def lora_targets_for(model: nn.Module, candidates: tuple[tuple[str, ...], ...]) -> list[str]:
    """The first candidate set of module names the model has all of (its attention projections)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for targets in candidates:
        if all(target in names for target in targets):
            return list(targets)
    raise ConfigError("no default LoRA target modules found in this architecture: set model.lora_targets")
