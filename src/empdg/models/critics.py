"""EmpDG interactive critics: one Wasserstein critic class for both the semantic and emotional resolution."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class CriticConfig:
    """Sizes of a :class:`ResponseCritic`; passed explicitly so every layer is built in ``__init__``.

    The defaults here build the paper's critic (``fusion="sum"``, no word match), the reference the tests pin;
    a training run builds its critics from ``adversarial.critic`` (:class:`empdg.config.schema.CriticSizes`),
    whose defaults add ``sum_product`` fusion and the word-match term (the paper's critic could not tell a reply
    in its own dialogue from the same reply in another: docs/critics.md).
    """

    input_dim: int
    hidden_dim: int
    context_dim: int
    kernel_sizes: tuple[int, ...] = (2, 3, 4)
    num_filters: int = 64
    use_feedback: bool = True
    dropout: float = 0.0
    # sum: ReLU(f + d_F + W_c x̃0) as in the paper (response and condition interact only through the
    # ReLU); sum_product: also f ⊙ (d_F + W_c x̃0), so the score can depend on how well they fit
    fusion: str = "sum"
    # word_match: the score also reads how well the response's words match the context's and the
    # feedback's words (gated mean over response positions of the best cosine with any of their words,
    # on the input vectors and on a learned projection): a summary vector alone (x̃0, d_F) cannot tell
    # a reply to this dialogue from one to another (docs/critics.md has the study's figures).
    word_match: bool = False
    # the word-match term is multiplied by this: its features are cosines (|difference| < 1) while a
    # critic's scores spread over tens of units, and Adam moves a weight ~lr per update, so at scale 1
    # a few hundred updates leave the term drowned in the rest of the score
    match_scale: float = 30.0


FUSIONS = ("sum", "sum_product")


def _run_lstm(lstm: nn.LSTM, inputs: Tensor) -> Tensor:
    """Run ``lstm`` with cuDNN off, because cuDNN RNN backward is not twice differentiable.

    The gradient penalty takes ``autograd.grad(create_graph=True)`` through the critic. PyTorch's native
    LSTM is twice differentiable (tested on CPU; on CUDA it goes through the fused cell, whose backward
    has a differentiable fallback). CPU tensors run as they are.
    """
    if not inputs.is_cuda:
        return lstm(inputs)[0]
    cudnn = torch.backends.cudnn
    # flags() resets every cuDNN flag it is not given, so pass the current ones through.
    with cudnn.flags(
        enabled=False,
        benchmark=cudnn.benchmark,
        deterministic=cudnn.deterministic,
        allow_tf32=cudnn.allow_tf32,
    ):
        return lstm(inputs)[0]


def _as(x: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """``x`` in ``dtype`` when it is a floating tensor (masks and None pass through)."""
    return x.to(dtype) if x is not None and x.is_floating_point() else x


def _soft_unit(x: Tensor, kappa: float | Tensor) -> Tensor:
    """x / sqrt(|x|² + κ²): nearly the unit vector for |x| ≫ κ, but with slope at most 1/κ near 0.

    The gradient penalty interpolates responses towards zero vectors (padding, D_emo's non-emotion
    positions); an exact cosine's gradient grows as 1/|x| there (docs/critics.md, "Critics that compare words").
    """
    return x * torch.rsqrt(x.pow(2).sum(dim=-1, keepdim=True) + kappa * kappa)


def best_match(
    response: Tensor, response_mask: Tensor, words: Tensor, words_mask: Tensor, kappa: float | Tensor = 1.0
) -> Tensor:
    """[B, T]: each response position's best (softened, see :func:`_soft_unit`) cosine with any real
    position of ``words``; 0 where there are none."""
    sim = torch.einsum("btd,bsd->bts", _soft_unit(response, kappa), _soft_unit(words, kappa))
    sim = sim.masked_fill(~words_mask.bool().unsqueeze(1), -2.0)
    best = sim.max(dim=2).values
    has_words = words_mask.bool().any(dim=1, keepdim=True)
    return torch.where(has_words & response_mask.bool(), best, torch.zeros_like(best))


def softening_scale(words: Tensor, words_mask: Tensor) -> Tensor:
    """κ for :func:`_soft_unit`: half the median norm of the real words (data-side, no gradient), so
    the softened cosine's slope near 0 (1/κ) is of the order of a cosine's at a real word (1/|x|),
    whatever the embedding's scale (word vectors of norm ~17 here, ~1 in pretrained models)."""
    norms = words.detach().norm(dim=-1)
    real = words_mask.bool()
    if not bool(real.any()):  # nothing to match anyway (this and the masked select sync a GPU once per call)
        return norms.new_ones(())
    kappa = norms[real].median() / 2
    return torch.where(kappa > 1e-6, kappa, torch.ones_like(kappa))


def _last_state(states: Tensor, mask: Tensor) -> Tensor:
    """State at the last real position of each row; rows without real positions get zeros (not NaN)."""
    lengths = mask.long().sum(dim=1)
    index = (lengths - 1).clamp(min=0)
    batch = torch.arange(states.size(0), device=states.device)
    last = states[batch, index]
    return last * (lengths > 0).unsqueeze(-1).to(states.dtype)


class ResponseCritic(nn.Module):
    """Interactive critic D(response | context, feedback) -> one unbounded score per example.

    score = W_d · ReLU(f + d_F + W_c x̃0) + b, where f is a CNN (several kernel widths, masked max-pool)
    over the LSTM states of the response and d_F is the final state of a separate LSTM over the user's
    feedback (the next user utterance). No sigmoid: it is a WGAN critic; the vanilla GAN loss reads the
    score as a logit.

    The same class serves both EmpDG critics:

    * semantic critic D_sem: ``response`` = word vectors of the response, ``feedback`` = word vectors of
      the next user utterance, ``context`` = the semantic context vector x̃0;
    * emotional critic D_emo: ``response`` = emotion-word vectors of the response (the caller multiplies
      each position by its emotion weight in [0, 1]; with ``adversarial.critic.emotion_floor`` f > 0 by
      f + (1 - f) · that weight, so every word is read and the emotion words stand out),
      ``feedback`` = emotion words of the next user utterance, ``context`` = the emotional context vector w̃0.

    Padded response positions are zeroed before the LSTM, so the score and its input gradient do not
    depend on what the caller left there (the gradient there is exactly zero).
    """

    def __init__(self, config: CriticConfig) -> None:
        super().__init__()
        if not config.kernel_sizes:
            raise ValueError("CriticConfig.kernel_sizes must name at least one convolution width")
        if config.fusion not in FUSIONS:
            raise ValueError(f"adversarial.critic.fusion={config.fusion!r}: choose one of {FUSIONS}")
        self.config = config
        hidden = config.hidden_dim
        self.response_lstm = nn.LSTM(config.input_dim, hidden, batch_first=True)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, config.num_filters, k) for k in config.kernel_sizes)
        self.response_proj = nn.Linear(config.num_filters * len(config.kernel_sizes), hidden)
        self.feedback_lstm = nn.LSTM(config.input_dim, hidden, batch_first=True) if config.use_feedback else None
        self.context_proj = nn.Linear(config.context_dim, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(hidden * (2 if config.fusion == "sum_product" else 1), 1)
        if config.word_match:
            # which response positions count (learns to ignore function words) and a learned space
            # in which related words match; features: {context, feedback} x {input, learned} space
            self.match_gate = nn.Linear(config.input_dim, 1)
            self.match_proj = nn.Linear(config.input_dim, hidden, bias=False)
            self.match_out = nn.Linear(4, 1)
            # start from "a reply that echoes its dialogue is real": the sign a random init may miss
            # for the few hundred critic updates a run gives it
            nn.init.constant_(self.match_out.weight, 1.0)
            nn.init.zeros_(self.match_out.bias)

    def encode_response(self, response: Tensor, response_mask: Tensor) -> Tensor:
        """Response features f [B, hidden]: LSTM, convolutions, ReLU, masked max-pool over time."""
        mask = response_mask.to(torch.bool)
        states = _run_lstm(self.response_lstm, response * mask.unsqueeze(-1).to(response.dtype))
        # Zero padded states so windows running past the end see zeros, whatever the padded length.
        states = (states * mask.unsqueeze(-1).to(states.dtype)).transpose(1, 2)  # [B, H, T]
        has_real = mask.any(dim=1, keepdim=True)
        pooled = []
        for conv in self.convs:
            # Right-pad by k-1 so window j starts at position j: length T out, short sequences still work.
            feats = F.relu(conv(F.pad(states, (0, conv.kernel_size[0] - 1))))  # [B, F, T]
            feats = feats.masked_fill(~mask.unsqueeze(1), float("-inf"))
            best = feats.max(dim=2).values
            pooled.append(torch.where(has_real, best, torch.zeros_like(best)))
        return self.response_proj(self.dropout(torch.cat(pooled, dim=1)))

    def forward(
        self,
        response: Tensor,
        response_mask: Tensor,
        context: Tensor,
        feedback: Tensor | None = None,
        feedback_mask: Tensor | None = None,
        context_words: Tensor | None = None,
        context_words_mask: Tensor | None = None,
        response_weight: Tensor | None = None,
    ) -> Tensor:
        """Score [B] for ``response`` [B,T,D] (mask True = real token) given ``context`` [B,context_dim].

        ``feedback`` [B,Tf,D] with ``feedback_mask`` [B,Tf] is required when ``use_feedback`` is on and
        ignored otherwise. Examples with empty feedback get d_F = 0 (finite; the caller should drop them).
        ``context_words`` [B,Tc,D] (mask [B,Tc]): the context's word vectors, read with ``word_match``
        only; without them the context's match features are 0. ``response_weight`` [B,T]: how much each
        response position counts in the match (rare words more; a data-side constant); None: alike.

        Computed with autocast off, in the critic's own dtype (float32 under mixed precision, on CPU
        and CUDA alike): the critics are small, WGAN-GP's double backward is fragile in low precision,
        and oneDNN has no bf16 LSTM on CPUs without AVX-512 ("could not create a primitive descriptor").
        """
        dtype = self.out.weight.dtype
        with torch.autocast(device_type=response.device.type, enabled=False):
            return self._score(
                _as(response, dtype),
                response_mask,
                _as(context, dtype),
                _as(feedback, dtype),
                feedback_mask,
                _as(context_words, dtype),
                context_words_mask,
                _as(response_weight, dtype),
            )

    def _score(
        self,
        response: Tensor,
        response_mask: Tensor,
        context: Tensor,
        feedback: Tensor | None,
        feedback_mask: Tensor | None,
        context_words: Tensor | None,
        context_words_mask: Tensor | None,
        response_weight: Tensor | None,
    ) -> Tensor:
        response_features = self.encode_response(response, response_mask)
        condition = self.context_proj(context)
        if self.feedback_lstm is not None:
            if feedback is None:
                raise ValueError(
                    "this critic was built with use_feedback=True: pass feedback (and feedback_mask), "
                    "or build it with CriticConfig(use_feedback=False)"
                )
            if feedback_mask is None:
                feedback_mask = torch.ones(feedback.shape[:2], dtype=torch.bool, device=feedback.device)
            fmask = feedback_mask.to(torch.bool)
            fstates = _run_lstm(self.feedback_lstm, feedback * fmask.unsqueeze(-1).to(feedback.dtype))
            condition = condition + _last_state(fstates, fmask)
        hidden = response_features + condition
        if self.config.fusion == "sum_product":
            hidden = torch.cat([hidden, response_features * condition], dim=-1)
        score = self.out(self.dropout(F.relu(hidden))).squeeze(-1)
        if self.config.word_match:
            sources = [(context_words, context_words_mask)]
            sources.append((feedback, feedback_mask) if self.feedback_lstm is not None else (None, None))
            score = score + self.match_score(response, response_mask, sources, response_weight)
        return score

    def match_score(
        self, response: Tensor, response_mask: Tensor, sources: list, response_weight: Tensor | None = None
    ) -> Tensor:
        """The word-match term [B]: learned weights over gated weighted means of best-match features.

        A position counts by a learned gate times ``response_weight`` (data-side: word rarity, and
        for D_emo how much the position is an emotion word), never by anything computed from the
        vector's size, so the gradient penalty's interpolated inputs stay well-behaved.
        """
        mask = response_mask.to(response.dtype)
        weight = mask if response_weight is None else mask * response_weight.detach().to(response.dtype)
        gate = torch.sigmoid(self.match_gate(response)).squeeze(-1) * weight
        total = gate.sum(dim=1).clamp_min(1e-6)
        projected = self.match_proj(response)
        features = []
        for words, words_mask in sources:
            if words is None:
                features += [response.new_zeros(response.shape[0])] * 2
                continue
            if words_mask is None:
                words_mask = torch.ones(words.shape[:2], dtype=torch.bool, device=words.device)
            for a, b in ((response, words), (projected, self.match_proj(words))):
                kappa = softening_scale(b, words_mask)
                features.append((best_match(a, response_mask, b, words_mask, kappa) * gate).sum(dim=1) / total)
        return self.config.match_scale * self.match_out(torch.stack(features, dim=1)).squeeze(-1)
