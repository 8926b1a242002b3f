"""``model=hf_causal``: a pretrained decoder-only language model (GPT-2 / DialoGPT family) as the generator.

The sequence is ``[prefix] [CLS] [SPK] u_1 [LST] u_2 ... [LST] reply [EOS]``: the context's turns
after the tokenizer's bos and separators (DialoGPT's layout with the default separator, its eos), the
reply after the listener separator. With ``model.emotion_encoder=true`` EmpDG's emotion encoder
reads the context's emotion words and its states go first, as a prefix of input vectors the whole
sequence attends to. x̃0 (and the emotion head's input) is the model's last hidden state at the last
context token. Padding inside the sequence is masked and position ids skip it, so a row's result
does not depend on its batch.

The context is run once per encoding: decoding continues from its key/value cache. With
``model.gradient_checkpointing`` in training mode the model's cache is not kept up to date, so every
pass re-reads the context instead: same results, more compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from empdg.data.vocab import LST_ID
from empdg.errors import ConfigError
from empdg.models.base import EncodedDialogue
from empdg.models.hf_pretrained import PretrainedGenerator, lora_targets_for
from empdg.models.registry import register_generator


@dataclass
class CausalContext:
    keys_values: list | None  # per layer (keys, values) of prefix + context; None when the model kept no cache
    inputs: Tensor  # [B, P, emb] the input vectors of prefix + context
    mask: Tensor  # [B, P] 1 at real positions
    positions: Tensor  # [B, P] their position ids
    next_position: Tensor  # [B] position id of the first reply position


@dataclass
class CausalCache:
    keys_values: list | None
    mask: Tensor  # [B, P + steps]
    position: Tensor  # [B] position id of the next input
    inputs: Tensor | None = None  # [B, steps, emb] the reply inputs so far (re-read when there is no cache)


@register_generator("hf_causal")
class HFCausalGenerator(PretrainedGenerator):
    auto_class = "AutoModelForCausalLM"

    def __init__(self, settings, vocab_size: int) -> None:
        super().__init__(settings, vocab_size)
        emb, hidden = self.sizes.emb_dim, self.sizes.hidden_dim
        self.prefix = (nn.Identity() if emb == hidden else nn.Linear(hidden, emb)) if self.emotion_encoder else None

    def default_lora_targets(self, model: nn.Module) -> list[str]:
        return lora_targets_for(model, (("c_attn",), ("q_proj", "v_proj"), ("query_key_value",)))

    def decoder_module(self) -> nn.Module:
        return self.base_model

    def _check_length(self, length: int) -> None:
        limit = self.sizes.max_positions
        if limit is not None and length > limit:
            raise ConfigError(
                f"prefix + context + reply need {length} positions, model.pretrained has {limit}: "
                "lower data.max_context_len (and data.max_target_len)"
            )

    def encode(self, batch: dict) -> EncodedDialogue:
        valid = ~batch["context_pad_mask"]
        inputs = self.embed_tokens(batch["context_ids"])
        w0 = None
        emotion = self.emotion_states(batch)
        if emotion is not None:
            emotion_states, emotion_pad = emotion
            w0 = emotion_states[:, 0]
            inputs = torch.cat([self.prefix(emotion_states).to(inputs.dtype), inputs], dim=1)
            valid = torch.cat([~emotion_pad, valid], dim=1)
        self._check_length(inputs.shape[1] + (batch["target_ids"].shape[1] if "target_ids" in batch else 0))
        positions = (valid.long().cumsum(1) - 1).clamp_min(0)
        out = self.base_model(
            inputs_embeds=inputs, attention_mask=valid.long(), position_ids=positions,
            use_cache=True, output_hidden_states=True,
        )  # fmt: skip
        last = (valid.long() * torch.arange(valid.shape[1], device=valid.device)).argmax(1)
        x0 = out.hidden_states[-1][torch.arange(valid.shape[0], device=valid.device), last]
        keys_values = None  # under checkpointing in training the model's cache is not kept up to date
        if out.cache is not None and not (self.training and self.settings.gradient_checkpointing):
            keys_values = [(layer.keys, layer.values) for layer in out.cache.layers]
        state = CausalContext(keys_values, inputs, valid.long(), positions, valid.long().sum(1))
        return EncodedDialogue(x0=x0, w0=w0, emotion_logits=self.classify(x0, w0), state=state)

    def _start(self, encoded: EncodedDialogue) -> Tensor:
        ids = torch.full((encoded.batch_size, 1), LST_ID, dtype=torch.long, device=encoded.device)
        return self.embed_tokens(ids)

    def _run(self, state: CausalContext, keys_values: list | None, mask: Tensor, positions: Tensor, inputs: Tensor):
        """Logits of the reply ``inputs`` after the context: from its cache, or re-reading it without one."""
        from transformers import DynamicCache

        if keys_values is None:
            steps = inputs.shape[1]
            out = self.base_model(
                inputs_embeds=torch.cat([state.inputs, inputs], dim=1), attention_mask=mask,
                position_ids=torch.cat([state.positions, positions], dim=1), use_cache=False,
            )  # fmt: skip
            return out.logits[:, -steps:], None
        out = self.base_model(
            inputs_embeds=inputs, attention_mask=mask, position_ids=positions,
            cache=DynamicCache(keys_values), use_cache=True,
        )  # fmt: skip
        return out.logits, [(layer.keys, layer.values) for layer in out.cache.layers]

    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        state: CausalContext = encoded.state
        start = self._start(encoded)
        inputs = torch.cat([start, token_vectors.to(start.dtype)], dim=1)
        steps = inputs.shape[1]
        mask = torch.cat([state.mask, state.mask.new_ones(state.mask.shape[0], steps)], dim=1)
        positions = state.next_position.unsqueeze(1) + torch.arange(steps, device=inputs.device)
        return self.project_log_probs(self._run(state, state.keys_values, mask, positions, inputs)[0])

    def new_cache(self, encoded: EncodedDialogue) -> CausalCache:
        state: CausalContext = encoded.state
        keys_values = list(state.keys_values) if state.keys_values is not None else None
        return CausalCache(keys_values, state.mask, state.next_position.clone())

    def decode_step(self, encoded: EncodedDialogue, cache: CausalCache, previous: Tensor | None) -> Tensor:
        inputs = self._start(encoded) if previous is None else previous.unsqueeze(1)
        cache.mask = torch.cat([cache.mask, cache.mask.new_ones(cache.mask.shape[0], 1)], dim=1)
        self._check_length(cache.mask.shape[1])
        state: CausalContext = encoded.state
        if cache.keys_values is None:  # no cache kept: re-read the reply so far with the context
            cache.inputs = inputs if cache.inputs is None else torch.cat([cache.inputs, inputs], dim=1)
            steps = cache.inputs.shape[1]
            positions = state.next_position.unsqueeze(1) + torch.arange(steps, device=inputs.device)
            logits, _ = self._run(state, None, cache.mask, positions, cache.inputs)
        else:
            position = cache.position.unsqueeze(1)
            logits, cache.keys_values = self._run(state, cache.keys_values, cache.mask, position, inputs)
        cache.position = cache.position + 1
        return self.project_log_probs(logits[:, -1])
