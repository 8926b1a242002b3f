"""EmpDG interactive critics: one Wasserstein critic class for both the semantic and emotional resolution."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class CriticConfig:
    """Sizes of a :class:`ResponseCritic`; passed explicitly so every layer is built in ``__init__``."""

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
      each position by its emotion weight in [0, 1]), ``feedback`` = emotion words of the next user
      utterance, ``context`` = the emotional context vector w̃0.

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
        self.feedback_lstm = (
            nn.LSTM(config.input_dim, hidden, batch_first=True) if config.use_feedback else None
        )
        self.context_proj = nn.Linear(config.context_dim, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(hidden * (2 if config.fusion == "sum_product" else 1), 1)

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
    ) -> Tensor:
        """Score [B] for ``response`` [B,T,D] (mask True = real token) given ``context`` [B,context_dim].

        ``feedback`` [B,Tf,D] with ``feedback_mask`` [B,Tf] is required when ``use_feedback`` is on and
        ignored otherwise. Examples with empty feedback get d_F = 0 (finite; the caller should drop them).
        """
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
        return self.out(self.dropout(F.relu(hidden))).squeeze(-1)
