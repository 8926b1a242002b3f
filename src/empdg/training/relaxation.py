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
from empdg.models.base import EncodedDialogue, Generator
from empdg.training.critic_inputs import ResponseView

RELAXATIONS = ("soft", "gumbel")
RelaxedResponse = ResponseView  # a relaxed response is a view whose vectors carry gradient


def soft_response(
    generator: Generator,
    log_probs: Tensor,
    target_pad_mask: Tensor,
    emotion_vocab: Tensor,
    tau: float,
    match_vocab: Tensor | None = None,
) -> RelaxedResponse:
    """Expected embeddings under teacher forcing; aligned with the gold response position by position.
    Per-token weights (emotion, word match) are their expectations under the same distribution."""
    vocab_size = generator.sizes.vocab_size
    probs = torch.softmax(log_probs[..., :vocab_size] / tau, dim=-1)
    vectors = probs @ generator.word_embedding.weight
    match = None if match_vocab is None else probs.detach() @ match_vocab
    return RelaxedResponse(vectors, ~target_pad_mask, probs @ emotion_vocab, match)


def gumbel_response(
    generator: Generator,
    encoded: EncodedDialogue,
    emotion_vocab: Tensor,
    tau: float,
    max_len: int,
    match_vocab: Tensor | None = None,
) -> RelaxedResponse:
    """Free-running straight-through Gumbel-softmax decoding with the generator's cache."""
    vocab_size = generator.sizes.vocab_size
    cache = generator.new_cache(encoded)
    previous = None  # the word vectors of the last sample: differentiable, fed back as the next input
    finished = torch.zeros(encoded.batch_size, dtype=torch.bool, device=encoded.device)
    vectors, masks, weights, matches = [], [], [], []
    for _ in range(max_len):
        log_probs = generator.decode_step(encoded, cache, previous)
        sample = F.gumbel_softmax(log_probs[:, :vocab_size], tau=tau, hard=True)  # [B, V]
        masks.append(~finished)
        previous = sample @ generator.word_embedding.weight
        vectors.append(previous)
        weights.append(sample @ emotion_vocab)
        if match_vocab is not None:
            matches.append(sample.detach() @ match_vocab)
        finished = finished | sample[:, EOS_ID].detach().bool()
        if bool(finished.all()):
            break
    match = torch.stack(matches, 1) if matches else None
    return RelaxedResponse(torch.stack(vectors, 1), torch.stack(masks, 1), torch.stack(weights, 1), match)
