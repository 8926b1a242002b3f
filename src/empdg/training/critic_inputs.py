"""What each interactive critic reads, for gold (real) and generated (fake) responses.

- Semantic critic D_sem: the response's word vectors, the user's next utterance (feedback) as
  word vectors, and the dialogue summary x̃0.
- Emotional critic D_emo: the response's emotion words -- word vectors scaled by each position's
  emotion weight (0/1 mask for gold text, emotion-lexicon probability mass for generated text) --
  the feedback's emotion words, and the emotion summary w̃0 (x̃0 when the model has no emotion
  encoder, i.e. the no_emotion_encoder ablation).

Critics skip examples without feedback when they read feedback (``rows``); the no_feedback
ablation reads every example. Data-side vectors (gold text, feedback) are always detached: only
the generated response may carry gradient to the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from empdg.models.generator import EmpDGGenerator, EncodedDialogue
from empdg.training.relaxation import RelaxedResponse, pad_time


@dataclass
class CriticInputs:
    real: Tensor
    real_mask: Tensor
    fake: Tensor
    fake_mask: Tensor
    context: Tensor
    feedback: Tensor | None
    feedback_mask: Tensor | None

    @property
    def mixed_mask(self) -> Tensor:
        """Positions of the gradient-penalty interpolates: real in either response."""
        return self.real_mask | self.fake_mask


def feedback_rows(batch: dict, use_feedback: bool) -> Tensor:
    """Indices of the examples the critics train on."""
    if use_feedback:
        return batch["has_feedback"].nonzero(as_tuple=True)[0]
    return torch.arange(batch["has_feedback"].shape[0], device=batch["has_feedback"].device)


def _aligned(real: Tensor, real_mask: Tensor, fake: Tensor, fake_mask: Tensor):
    length = max(real.shape[1], fake.shape[1])
    return pad_time(real, length), pad_time(real_mask, length), pad_time(fake, length), pad_time(fake_mask, length)


def critic_inputs(
    generator: EmpDGGenerator,
    batch: dict,
    encoded: EncodedDialogue,
    fake: RelaxedResponse,
    rows: Tensor,
    *,
    use_feedback: bool,
    grad_to_encoders: bool,
) -> dict[str, CriticInputs]:
    """Inputs of both critics ('semantic', 'emotion'), restricted to ``rows``."""
    embed = generator.embedding
    with torch.no_grad():
        gold = embed(batch["target_ids"][rows])
        gold_mask = ~batch["target_pad_mask"][rows]
        gold_emotion = gold * batch["target_emotion_mask"][rows].unsqueeze(-1)
        fb = embed(batch["feedback_ids"][rows]) if use_feedback else None
        fb_emotion = embed(batch["feedback_emotion_ids"][rows]) if use_feedback else None
    fb_mask = ~batch["feedback_pad_mask"][rows] if use_feedback else None
    fb_emotion_mask = ~batch["feedback_emotion_pad_mask"][rows] if use_feedback else None

    x0 = encoded.x0[rows]
    w0 = encoded.w0[rows] if encoded.w0 is not None else x0
    if not grad_to_encoders:
        x0, w0 = x0.detach(), w0.detach()

    fake_vectors, fake_mask = fake.vectors[rows], fake.mask[rows]
    fake_emotion = fake_vectors * fake.emotion_weight[rows].unsqueeze(-1)
    semantic = CriticInputs(*_aligned(gold, gold_mask, fake_vectors, fake_mask), x0, fb, fb_mask)
    emotion = CriticInputs(*_aligned(gold_emotion, gold_mask, fake_emotion, fake_mask), w0, fb_emotion, fb_emotion_mask)
    return {"semantic": semantic, "emotion": emotion}
