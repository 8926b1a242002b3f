"""What each interactive critic reads, for gold (real) and generated (fake) responses, in one form.

A critic must not be able to tell real from fake by *how* a response is presented, only by *what*
it says. So every response -- gold, sampled, greedy, mismatched or relaxed -- becomes a
:class:`ResponseView` through the same transformation, and :func:`critic_response` turns a view
into one critic's input the same way for all of them:

- Semantic critic D_sem: the response's word vectors; conditioned on the dialogue summary x̃0 and
  the user's next utterance (feedback) as word vectors.
- Emotional critic D_emo: the response's emotion words -- word vectors scaled by each position's
  emotion weight (the lexicon indicator for tokens, the lexicon probability mass for relaxed
  responses); conditioned on w̃0 (x̃0 without an emotion encoder) and the feedback's emotion words.
  With ``adversarial.critic.emotion_floor`` f > 0 it reads the whole response instead: every
  position scaled by f + (1 - f) · its emotion weight (:func:`critic_emotion_weight`), so a reply
  without emotion words is still read, its emotion words stand out by a factor 1/f.

Which condition a critic reads and how it weights the positions is its
:class:`~empdg.models.critic_rules.CriticRule`; :class:`~empdg.models.critic_panel.CriticPanel` applies
the rules (training, the critic report and the chat alike).

Hard token sequences (gold and generated alike) are embedded with the generator's table and
weighted by the same lexicon lookup, so real and fake share one form exactly. Relaxed (soft)
responses are mixtures of word vectors with smaller norms; the soft estimator (``Estimator.unit_norm``)
rescales every position of every response to unit length so that norm is no cue.

Critics skip examples without feedback when they read feedback (``rows``); the no_feedback
ablation reads every example. Data-side vectors are always detached: only a relaxed generated
response may carry gradient to the generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from empdg.data.vocab import SPECIAL_TOKENS
from empdg.models.base import Generator

if TYPE_CHECKING:
    from empdg.models.critic_rules import CriticRule


@dataclass
class ResponseView:
    """A response as word vectors: the one form every critic input is made from."""

    vectors: Tensor  # [B, T, emb]
    mask: Tensor  # [B, T] True at real positions
    emotion_weight: Tensor  # [B, T] in [0, 1]: how much each position is an emotion word
    # [B, T] how much each position counts in a ``word_match`` critic (rare words more); None: alike
    match_weight: Tensor | None = None

    def rows(self, index: Tensor) -> ResponseView:
        weight = None if self.match_weight is None else self.match_weight[index]
        return ResponseView(self.vectors[index], self.mask[index], self.emotion_weight[index], weight)


@dataclass
class CriticCondition:
    """What a critic reads besides the response: the dialogue summary, the user's feedback, and the
    context's own words (semantic: every word; emotional: its emotion words) for ``word_match``."""

    context: Tensor  # [B, H]
    feedback: Tensor | None  # [B, Tf, emb]
    feedback_mask: Tensor | None  # [B, Tf]
    context_words: Tensor | None = None  # [B, Tc, emb]
    context_words_mask: Tensor | None = None  # [B, Tc] True at real (non-special) words

    def rows(self, index: Tensor) -> CriticCondition:
        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[index]

        return CriticCondition(
            self.context[index],
            pick(self.feedback),
            pick(self.feedback_mask),
            pick(self.context_words),
            pick(self.context_words_mask),
        )

    def critic_kwargs(self) -> dict[str, Tensor | None]:
        """Keyword arguments of ``ResponseCritic.forward`` besides the response."""
        return {
            "context": self.context,
            "feedback": self.feedback,
            "feedback_mask": self.feedback_mask,
            "context_words": self.context_words,
            "context_words_mask": self.context_words_mask,
        }


def feedback_rows(batch: dict, use_feedback: bool) -> Tensor:
    """Indices of the examples the critics read."""
    if use_feedback:
        return batch["has_feedback"].nonzero(as_tuple=True)[0]
    return torch.arange(batch["has_feedback"].shape[0], device=batch["has_feedback"].device)


def mismatch_permutation(n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """A cyclic shift by 1..n-1: row i is paired with row perm[i] != i (never with itself).

    Needs n >= 2. A cyclic shift is a derangement for every shift in 1..n-1.
    """
    if n < 2:
        raise ValueError(f"mismatched negatives need at least 2 examples, got {n}")
    shift = int(torch.randint(1, n, (1,), generator=generator, device=generator.device if generator else None))
    return (torch.arange(n, device=device) + shift) % n


def token_view(
    generator: Generator, ids: Tensor, mask: Tensor, emotion_vocab: Tensor, match_vocab: Tensor | None = None
) -> ResponseView:
    """Hard tokens (gold or generated) as a view: embedding rows, the lexicon indicator and (with
    ``match_vocab``, a [V] table) each token's word-match weight."""
    with torch.no_grad():
        vectors = generator.embed_tokens(ids)
        in_vocab = ids < emotion_vocab.shape[0]
        safe = ids.clamp(max=emotion_vocab.shape[0] - 1)
        weight = emotion_vocab[safe] * in_vocab
        match = None if match_vocab is None else (match_vocab[safe] * in_vocab).to(vectors.dtype)
    return ResponseView(vectors, mask.bool(), weight.to(vectors.dtype), match)


def gold_view(generator: Generator, batch: dict, emotion_vocab: Tensor, match_vocab: Tensor | None = None):
    return token_view(generator, batch["target_ids"], ~batch["target_pad_mask"], emotion_vocab, match_vocab)


def match_vocab_weights(tokens: list[str], frequency_sorted: bool, power: float) -> Tensor:
    """[V] word-match weight per token id: ``log(1 + rank)**power`` for a vocabulary sorted by training
    frequency (Zipf's law makes log-rank an inverse-document-frequency estimate, so "i", "." and
    "that" count little and "dog" much), 1 for every token of another vocabulary; 0 for special ids.

    Rare words decide whether a reply fits its dialogue; docs/critics.md gives the measured effect of the power.
    """
    size = len(tokens)
    weights = torch.ones(size)
    if frequency_sorted:
        ranks = torch.arange(1, size - len(SPECIAL_TOKENS) + 1, dtype=torch.float)
        weights[len(SPECIAL_TOKENS) :] = torch.log1p(ranks) ** power
    weights[: len(SPECIAL_TOKENS)] = 0.0
    return weights


def critic_emotion_weight(view: ResponseView, emotion_floor: float = 0.0) -> Tensor:
    """[B, T] the factor by which the emotional critic scales each response position's vector.

    ``emotion_floor`` f = 0 (the default): the emotion weight itself, so D_emo reads the emotion words
    only and a reply without any is an all-zero input (it cannot tell such a gold reply from a
    mismatched one; docs/critics.md says how often that happens). f > 0: f + (1 - f) · weight, the whole
    reply with its emotion words up-weighted (1 against f), as EmpDG's token-level emotion resolution
    marks them rather than cutting the rest away. The map is affine, so for a relaxed response, whose
    weight is the lexicon's probability mass p_t(emotion words), it is the expectation of the hard
    tokens' factor under p_t, and real and fake stay in one form; on the Gumbel and soft paths the
    gradient reaches the generator through the vectors at every position and through the weight (times
    1 - f). ``emotion_floor`` 0 returns the weight tensor itself: default runs compute exactly as before.
    """
    if emotion_floor == 0.0:
        return view.emotion_weight
    return emotion_floor + (1.0 - emotion_floor) * view.emotion_weight


def critic_response(
    view: ResponseView, rule: CriticRule, unit_norm: bool, emotion_floor: float = 0.0
) -> tuple[Tensor, Tensor]:
    """(vectors [B, T, emb], mask [B, T]) that the critic of ``rule`` reads for ``view``: the same rule for
    real and fake. Positions are scaled by the rule's :meth:`~CriticRule.position_weight` (the emotional
    critic's: :func:`critic_emotion_weight`)."""
    vectors = F.normalize(view.vectors, dim=-1) if unit_norm else view.vectors
    weight = rule.position_weight(view, emotion_floor)
    if weight is not None:
        vectors = vectors * weight.unsqueeze(-1)
    return vectors, view.mask


def critic_match_weight(view: ResponseView, rule: CriticRule, emotion_floor: float = 0.0) -> Tensor | None:
    """[B, T] how much each position counts in a ``word_match`` critic's match (data-side, no
    gradient): the word's rarity weight, times the rule's position weight (the emotional critic's)."""
    if view.match_weight is None:
        return None
    weight = view.match_weight.detach()
    position = rule.position_weight(view, emotion_floor)
    if position is None:
        return weight
    return weight * position.detach()


def context_words(generator: Generator, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Word vectors of context ids and the mask of real words (special ids -- padding, [CLS], [LAB],
    speaker marks -- are no words to match)."""
    return generator.embed_tokens(ids), ids >= len(SPECIAL_TOKENS)


def pad_time(x: Tensor, length: int) -> Tensor:
    """Zero-pad (False-pad for masks) a [B, T, ...] tensor in time to ``length``."""
    extra = length - x.shape[1]
    if extra <= 0:
        return x
    if x.dtype == torch.bool:
        return F.pad(x.long(), [0, 0] * (x.dim() - 2) + [0, extra]).bool()
    return F.pad(x, [0, 0] * (x.dim() - 2) + [0, extra])


def aligned(real: Tensor, real_mask: Tensor, fake: Tensor, fake_mask: Tensor):
    """Pad two responses to one length (the gradient penalty interpolates them position by position)."""
    length = max(real.shape[1], fake.shape[1])
    return pad_time(real, length), pad_time(real_mask, length), pad_time(fake, length), pad_time(fake_mask, length)
