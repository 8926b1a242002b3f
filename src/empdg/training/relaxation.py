"""Differentiable generated responses: the gradient path from the critics to the generator.

Generated text is discrete, so a critic score of sampled tokens carries no gradient to the
generator (the original EmpDG code's flaw: its adversarial term was a detached number). We feed
the critics *relaxed* responses instead -- sequences of word vectors that are differentiable
functions of the generator's output distribution:

- ``soft``: under teacher forcing, position t is the expected embedding softmax(logits_t / tau) · E.
  Cheap (no extra decoding) and smooth.
- ``gumbel``: free-running decoding with straight-through Gumbel-softmax samples: the forward
  pass uses the one-hot sample's embedding (what the generator would actually say), the backward
  pass the soft sample's gradient.

The emotional critic reads the emotion words of a response. For generated text we weight each
position by the probability mass the generator puts on emotion-lexicon tokens (sum of p_t(v) over
emotion words v); gold text uses its 0/1 emotion-word mask, of which this is the expectation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from empdg.data.vocab import EOS_ID
from empdg.models.generator import EmpDGGenerator, EncodedDialogue
from empdg.training.critic_inputs import ResponseView

RELAXATIONS = ("soft", "gumbel")
RelaxedResponse = ResponseView  # a relaxed response is a view whose vectors carry gradient


def soft_response(
    generator: EmpDGGenerator, log_probs: Tensor, target_pad_mask: Tensor, emotion_vocab: Tensor, tau: float
) -> RelaxedResponse:
    """Expected embeddings under teacher forcing; aligned with the gold response position by position."""
    vocab_size = generator.cfg.vocab_size
    probs = torch.softmax(log_probs[..., :vocab_size] / tau, dim=-1)
    vectors = probs @ generator.embedding.weight
    return RelaxedResponse(vectors, ~target_pad_mask, probs @ emotion_vocab)


def gumbel_response(
    generator: EmpDGGenerator, encoded: EncodedDialogue, emotion_vocab: Tensor, tau: float, max_len: int
) -> RelaxedResponse:
    """Free-running straight-through Gumbel-softmax decoding with the key/value cache."""
    vocab_size = generator.cfg.vocab_size
    cache = generator.new_cache()
    step_input = encoded.first_input.unsqueeze(1)
    batch_size = step_input.shape[0]
    finished = torch.zeros(batch_size, dtype=torch.bool, device=step_input.device)
    vectors, masks, weights = [], [], []
    for step in range(max_len):
        log_probs, _ = generator.decode_step(encoded, step_input, start=step, cache=cache)
        sample = F.gumbel_softmax(log_probs[:, -1, :vocab_size], tau=tau, hard=True)  # [B, V]
        masks.append(~finished)
        vector = sample @ generator.embedding.weight
        vectors.append(vector)
        weights.append(sample @ emotion_vocab)
        finished = finished | sample[:, EOS_ID].detach().bool()
        if bool(finished.all()):
            break
        step_input = generator.embedding_projection(vector).unsqueeze(1)
    return RelaxedResponse(torch.stack(vectors, 1), torch.stack(masks, 1), torch.stack(weights, 1))
