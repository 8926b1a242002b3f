"""Batched greedy decoding, incremental (key/value cache) or by re-running the whole prefix."""

from __future__ import annotations

import torch
from torch import Tensor

from empdg.data.vocab import EOS_ID, Vocab
from empdg.models.generator import EmpDGGenerator


@torch.no_grad()
def greedy_decode(model: EmpDGGenerator, batch: dict, max_len: int = 30, use_cache: bool = True) -> Tensor:
    """Return generated ids [B, <=max_len] (extended ids when copying), EOS included when reached.

    With ``use_cache`` each step feeds only the newest position and reuses cached keys/values;
    without it the decoder re-reads the whole prefix each step (the original code's approach).
    Both give identical tokens.
    """
    encoded = model.encode(batch)
    batch_size = encoded.x0.shape[0]
    device = encoded.x0.device
    cache = model.new_cache() if use_cache else None
    prefix = encoded.first_input.unsqueeze(1)
    step_input = prefix
    generated = torch.empty(batch_size, 0, dtype=torch.long, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for step in range(max_len):
        if use_cache:
            log_probs, _ = model.decode_step(encoded, step_input, start=step, cache=cache)
        else:
            log_probs, _ = model.decode_step(encoded, prefix)
        next_ids = log_probs[:, -1].argmax(dim=-1)
        next_ids = next_ids.masked_fill(finished, EOS_ID)
        generated = torch.cat([generated, next_ids.unsqueeze(1)], dim=1)
        finished |= next_ids.eq(EOS_ID)
        if bool(finished.all()):
            break
        step_input = model.embedding_projection(model.embed_tokens(next_ids)).unsqueeze(1)
        if not use_cache:
            prefix = torch.cat([prefix, step_input], dim=1)
    return generated


def ids_to_text(ids: list[int], vocab: Vocab, oovs: list[str]) -> str:
    """Whitespace-joined tokens up to EOS; extended ids become the copied context word."""
    words = []
    for token_id in ids:
        if token_id == EOS_ID:
            break
        if token_id >= len(vocab):
            k = token_id - len(vocab)
            words.append(oovs[k] if k < len(oovs) else vocab.id_to_token(1))
        else:
            words.extend(vocab.decode([token_id], strip_special=True, stop_at_eos=True))
    return " ".join(words)
