"""``model=hf_seq2seq``: a pretrained encoder-decoder (BART / T5 family, BERT2BERT) as the generator.

The encoder reads the dialogue (``[CLS] [SPK] u_1 [LST] u_2 ...`` mapped onto the tokenizer's bos and
separators); x̃0 is its states' mean over the real tokens. With ``model.emotion_encoder=true`` EmpDG's
emotion encoder reads the context's emotion words and its states are appended to the encoder memory,
so every decoder layer cross-attends to both. The decoder starts from the model's own decoder-start
token. Incremental decoding keeps the model's self- and cross-attention key/value cache (re-reads the
prefix instead under ``model.gradient_checkpointing`` in training mode, where the model keeps none).

The word vectors of the seam (what the decoder reads, what the critics read) are the decoder's input
embedding: one matrix shared with the encoder in BART and T5, the decoder's own in a BERT2BERT
``EncoderDecoderModel`` (``python -m empdg.make_bert2bert``), whose encoder reads its own copy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from empdg.data.vocab import SOS_ID
from empdg.models.base import EncodedDialogue
from empdg.models.hf_pretrained import PretrainedGenerator, lora_targets_for
from empdg.models.layers import masked_mean
from empdg.models.registry import register_generator


@dataclass
class Seq2SeqMemory:
    memory: Tensor  # [B, S, hidden] encoder states (+ emotion encoder states)
    memory_mask: Tensor  # [B, S] 1 where the decoder may attend


@dataclass
class Seq2SeqCache:
    self_attention: list = field(default_factory=list)  # per layer (keys, values) of the decoded prefix
    cross_attention: list = field(default_factory=list)  # per layer (keys, values) of the memory
    inputs: Tensor | None = None  # the decoder inputs so far, when the model keeps no cache (re-read each step)


@register_generator("hf_seq2seq")
class HFSeq2SeqGenerator(PretrainedGenerator):
    auto_class = "AutoModelForSeq2SeqLM"

    def default_lora_targets(self, model: nn.Module) -> list[str]:
        return lora_targets_for(model, (("q_proj", "v_proj"), ("q", "v"), ("query", "value")))

    def decoder_module(self) -> nn.Module:
        return self.base_model.get_decoder()

    def encoder_module(self) -> nn.Module:
        return self.base_model.get_encoder()

    def token_embedding(self) -> nn.Module:
        return self.decoder_module().get_input_embeddings()

    def encode(self, batch: dict) -> EncodedDialogue:
        valid = ~batch["context_pad_mask"]
        # frozen: no graph through the encoder (not even through an embedding it shares with the decoder)
        with torch.no_grad() if self.settings.freeze_encoder else contextlib.nullcontext():
            states = self.encoder_module()(
                input_ids=self.project_to_model[batch["context_ids"]], attention_mask=valid.long()
            ).last_hidden_state
        x0 = masked_mean(states, valid)
        memory, mask, w0 = states, valid, None
        emotion = self.emotion_states(batch)
        if emotion is not None:
            emotion_states, emotion_pad = emotion
            w0 = emotion_states[:, 0]
            memory = torch.cat([states, emotion_states.to(states.dtype)], dim=1)
            mask = torch.cat([valid, ~emotion_pad], dim=1)
        return EncodedDialogue(x0=x0, w0=w0, emotion_logits=self.classify(x0, w0),
                               state=Seq2SeqMemory(memory, mask.long()))  # fmt: skip

    def _start(self, encoded: EncodedDialogue) -> Tensor:
        ids = torch.full((encoded.batch_size, 1), SOS_ID, dtype=torch.long, device=encoded.device)
        return self.embed_tokens(ids)

    def _run(self, encoded: EncodedDialogue, inputs: Tensor, cache=None):
        from transformers.modeling_outputs import BaseModelOutput

        state: Seq2SeqMemory = encoded.state
        return self.base_model(
            encoder_outputs=BaseModelOutput(last_hidden_state=state.memory),
            attention_mask=state.memory_mask,
            decoder_inputs_embeds=inputs,
            cache=cache,
            use_cache=cache is not None,
        )

    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        start = self._start(encoded)
        inputs = torch.cat([start, token_vectors.to(start.dtype)], dim=1)
        return self.project_log_probs(self._run(encoded, inputs).logits)

    def new_cache(self, encoded: EncodedDialogue) -> Seq2SeqCache:
        return Seq2SeqCache()

    def decode_step(self, encoded: EncodedDialogue, cache: Seq2SeqCache, previous: Tensor | None) -> Tensor:
        from transformers import DynamicCache, EncoderDecoderCache

        inputs = self._start(encoded) if previous is None else previous.unsqueeze(1)
        if cache.inputs is not None or (self.training and self.settings.gradient_checkpointing):
            # Hugging Face keeps no cache under gradient checkpointing in training: re-read the prefix
            cache.inputs = inputs if cache.inputs is None else torch.cat([cache.inputs, inputs], dim=1)
            return self.project_log_probs(self._run(encoded, cache.inputs).logits[:, -1])
        model_cache = EncoderDecoderCache(DynamicCache(cache.self_attention), DynamicCache(cache.cross_attention))
        out = self._run(encoded, inputs, model_cache)
        cache.self_attention = [(layer.keys, layer.values) for layer in out.cache.self_attention_cache.layers]
        cache.cross_attention = [(layer.keys, layer.values) for layer in out.cache.cross_attention_cache.layers]
        return self.project_log_probs(out.logits[:, -1])
