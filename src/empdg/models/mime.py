"""MIME: emotion mimicry with polarity-grouped, stochastic emotion mixtures.

Majumder et al., "MIME: MIMicking Emotions for Empathetic Response Generation", EMNLP 2020 (code:
github.com/declare-lab/MIME, ``main.py``'s ``TransformerMimic`` with ``model/VAE_noEmo_posterior.py``;
the released model's setting is ``emo_input=self_att``, ``emo_combine=gate``).

- Context encoder: ``[CLS] context`` with word + dialogue-state embeddings -> C; x̃0 = C[:, 0].
- Emotion classifier: ``(W_s x̃0) · E^T``, the similarity of the projected summary to each of the 32
  emotion embeddings E (one table, also the source of the emotion mixtures).
- Emotion groups: MIME splits the 32 emotions into 13 positive and 19 negative ones
  (:mod:`empdg.data.emotion_polarity`). A prior network maps x̃0 to a latent z per group
  (``z = mu + eps * std``); a softmax over the group's own emotions turns z into weights, and the
  weighted sum of the group's embeddings is that group's emotion representation.
- Mimicry: the group of the emotion (gold label in training, as the original; the predicted one
  otherwise) is *mimicked*, the other is not. Each representation is appended to every state of C and
  read by its own transformer encoder -> M (mimicking) and M̃ (non-mimicking).
- Mixture: the gate ``V = W_2(σ(W_1[M; M̃]) ⊙ [M; M̃])`` combines them position-wise.
- Decoder: a transformer decoder from SOS whose cross-attention reads V (keys and values) -- the
  mixed emotion representation is how the emotion reaches every decoding step.

Departures from the original, and why:

- The original's training loss adds a KL term between a posterior network (reading the means of M and
  M̃) and the prior. The seam gives training only the token log-probs and the emotion logits, so the
  KL term and the posterior network (which only that term trains) are left out; the prior samples z
  in training exactly as the original's decoder path does (its decoder reads the *prior* samples).
- In eval mode z = mu: decoding must be reproducible (and cached == uncached), so nothing random
  happens there; the original samples at test time too. ``model.stochastic=false`` uses mu always.
- The original's prior returns the positive group's log-variance for the negative group too (a slip);
  here each group has its own.
- x̃0 = C[:, 0]; w̃0 (the emotional critic's condition) = the mean of V over context positions: the
  mixed emotion representation the reply is meant to carry, already ``hidden_dim`` wide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from empdg.data.conversation import EMOTIONS
from empdg.data.emotion_polarity import positive_emotion_ids
from empdg.data.vocab import PAD_ID, SOS_ID
from empdg.models.base import EncodedDialogue, Generator, GeneratorSizes
from empdg.models.layers import StackSizes, TransformerDecoder, TransformerEncoder, masked_mean, sinusoidal_positions
from empdg.models.registry import register_generator
from empdg.models.settings import GeneratorSettings


@dataclass
class MIMESettings(GeneratorSettings):
    """MIME's own keys on top of the shared sizes; the defaults are the original's.

    ``latent_dim`` is the width of each group's latent z (the original's ``out_dim=300``);
    ``stochastic`` samples z in training (false: z = mu, the paper's "no stochasticity" ablation).
    """

    latent_dim: int = 300
    stochastic: bool = True

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.copy:
            problems.append("model.copy=true: mime has no copy mechanism (set model.copy=false)")
        if self.latent_dim < 1:
            problems.append(f"model.latent_dim={self.latent_dim} must be >= 1")
        if self.num_emotions != len(EMOTIONS):
            problems.append(
                f"model.num_emotions={self.num_emotions}: mime groups the {len(EMOTIONS)} EmpatheticDialogues "
                f"emotions by polarity (set model.num_emotions={len(EMOTIONS)})"
            )
        return problems


@dataclass
class Mimicry:
    """The two emotion representations [B, emb] and the group-wise weights they were mixed with."""

    mimic: Tensor
    non_mimic: Tensor
    positive_weights: Tensor  # [B, 13] over the positive group, summing to 1
    negative_weights: Tensor  # [B, 19] over the negative group, summing to 1


@dataclass
class MIMEState:
    """The decoder's view of an encoded batch: the mixed emotion representation V and its mask."""

    memory: Tensor  # [B, Tc, H]
    memory_pad_mask: Tensor  # [B, Tc]


@dataclass
class MIMECache:
    layers: list[dict] = field(default_factory=list)
    position: int = 0


class GroupPrior(nn.Module):
    """One polarity group's prior: x̃0 -> (mu, logvar) of z -> softmax weights over the group."""

    def __init__(self, hidden_dim: int, latent_dim: int, group_size: int) -> None:
        super().__init__()
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.logvar = nn.Linear(hidden_dim, latent_dim)
        self.weights = nn.Linear(latent_dim, group_size)

    def forward(self, h: Tensor, sample: bool) -> Tensor:
        mu = self.mu(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * self.logvar(h)) if sample else mu
        return torch.softmax(self.weights(z), dim=-1)


class EmotionInputEncoder(nn.Module):
    """Reads C with an emotion vector appended to every state (the original's ``self_att`` input)."""

    def __init__(self, stack: StackSizes, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.input_dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(stack.dim + emb_dim, stack.dim, bias=False)
        self.encoder = TransformerEncoder(stack)

    def forward(self, context: Tensor, emotion: Tensor, pad_mask: Tensor, positions: Tensor) -> Tensor:
        joined = torch.cat([context, emotion.unsqueeze(1).expand(-1, context.shape[1], -1)], dim=-1)
        return self.encoder(self.projection(self.input_dropout(joined)) + positions, pad_mask)


class EmotionGate(nn.Module):
    """V = W_2(σ(W_1[M; M̃]) ⊙ [M; M̃]): the original's ``gate`` combination, position-wise."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim, 2 * dim)
        self.out = nn.Linear(2 * dim, dim)

    def forward(self, m: Tensor, m_tilde: Tensor) -> Tensor:
        joined = torch.cat([m, m_tilde], dim=-1)
        return self.out(torch.sigmoid(self.gate(joined)) * joined)


@register_generator("mime")
class MIMEGenerator(Generator):
    settings_class = MIMESettings

    def __init__(self, settings: MIMESettings, vocab_size: int) -> None:
        sizes = GeneratorSizes.from_settings(settings, vocab_size, has_emotion_classifier=True)
        super().__init__(settings, sizes)
        cfg = settings
        h, e = cfg.hidden_dim, cfg.emb_dim
        positive = list(positive_emotion_ids())
        negative = [i for i in range(cfg.num_emotions) if i not in positive]
        self.register_buffer("positive_ids", torch.tensor(positive), persistent=False)
        self.register_buffer("negative_ids", torch.tensor(negative), persistent=False)
        is_positive = torch.zeros(cfg.num_emotions, dtype=torch.bool)
        is_positive[positive] = True
        self.register_buffer("is_positive", is_positive, persistent=False)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, h), persistent=False)

        stack = StackSizes.from_settings(cfg)
        self.embedding = nn.Embedding(vocab_size, e, padding_idx=PAD_ID)
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        self.encoder_projection = nn.Linear(e, h, bias=False)
        self.encoder = TransformerEncoder(stack)
        self.emotion_embedding = nn.Embedding(cfg.num_emotions, e)
        self.classifier_projection = nn.Linear(h, e, bias=False)
        self.prior_hidden = nn.Linear(h, h)
        self.positive_prior = GroupPrior(h, cfg.latent_dim, len(positive))
        self.negative_prior = GroupPrior(h, cfg.latent_dim, len(negative))
        self.mimic_encoder = EmotionInputEncoder(stack, e, cfg.input_dropout)
        self.non_mimic_encoder = EmotionInputEncoder(stack, e, cfg.input_dropout)
        self.gate = EmotionGate(h)
        self.decoder_projection = nn.Linear(e, h, bias=False)
        self.decoder = TransformerDecoder(stack)
        self.output = nn.Linear(h, vocab_size)
        if cfg.tie_embeddings:
            self.output.weight = self.embedding.weight

    @property
    def word_embedding(self) -> nn.Embedding:
        return self.embedding

    def _positions(self, start: int, length: int) -> Tensor:
        if start + length > self.settings.max_positions:
            raise ValueError(
                f"sequence of {start + length} positions exceeds model.max_positions={self.settings.max_positions}"
            )
        return self.positions[start : start + length]

    # -- encoder side ---------------------------------------------------------------------------
    def emotion_logits(self, x0: Tensor) -> Tensor:
        """MIME's classifier: similarity of W_s x̃0 to every emotion embedding [B, num_emotions]."""
        return self.classifier_projection(x0) @ self.emotion_embedding.weight.t()

    def emotion_mixture(self, x0: Tensor, positive_rows: Tensor) -> Mimicry:
        """The mimicking/non-mimicking emotion vectors; ``positive_rows`` [B] bool: the emotion's group.

        z is sampled only in training (with ``stochastic``); otherwise it is the prior's mean.
        """
        h = torch.relu(self.prior_hidden(x0))
        sample = self.training and self.settings.stochastic
        positive_weights = self.positive_prior(h, sample)
        negative_weights = self.negative_prior(h, sample)
        positive = positive_weights @ self.emotion_embedding(self.positive_ids)
        negative = negative_weights @ self.emotion_embedding(self.negative_ids)
        rows = positive_rows.unsqueeze(-1)
        return Mimicry(
            mimic=torch.where(rows, positive, negative),
            non_mimic=torch.where(rows, negative, positive),
            positive_weights=positive_weights,
            negative_weights=negative_weights,
        )

    def encode(self, batch: dict) -> EncodedDialogue:
        ids, mask = batch["context_ids"], batch["context_pad_mask"]
        positions = self._positions(0, ids.shape[1])
        words = self.input_dropout(self.embedding(ids) + self.embedding(batch["context_state"]))
        context = self.encoder(self.encoder_projection(words) + positions, mask)
        x0 = context[:, 0]
        logits = self.emotion_logits(x0)
        # the original mimics the gold emotion's group in training and the predicted one when decoding
        gold = batch.get("emotion_label") if self.training else None
        emotion = gold if gold is not None else logits.argmax(dim=-1)
        mimicry = self.emotion_mixture(x0, self.is_positive[emotion])
        m = self.mimic_encoder(context, mimicry.mimic, mask, positions)
        m_tilde = self.non_mimic_encoder(context, mimicry.non_mimic, mask, positions)
        mixed = self.gate(m, m_tilde)
        w0 = masked_mean(mixed, ~mask)
        state = MIMEState(memory=mixed, memory_pad_mask=mask)
        return EncodedDialogue(x0=x0, w0=w0, emotion_logits=logits, state=state)

    # -- decoder side ---------------------------------------------------------------------------
    def _sos(self, batch_size: int) -> Tensor:
        return self.embedding.weight[SOS_ID].expand(batch_size, 1, -1)

    def decode_sequence(self, encoded: EncodedDialogue, token_vectors: Tensor) -> Tensor:
        inputs = torch.cat([self._sos(encoded.batch_size).to(token_vectors.dtype), token_vectors], dim=1)
        return self._decode(encoded.state, inputs)

    def new_cache(self, encoded: EncodedDialogue) -> MIMECache:
        return MIMECache(layers=[{} for _ in self.decoder.layers])

    def decode_step(self, encoded: EncodedDialogue, cache: MIMECache, previous: Tensor | None) -> Tensor:
        if (previous is None) != (cache.position == 0):
            raise ValueError("decode_step takes previous=None at the first step only, and word vectors after it")
        inputs = self._sos(encoded.batch_size) if previous is None else previous.unsqueeze(1)
        log_probs = self._decode(encoded.state, inputs, start=cache.position, cache=cache.layers)
        cache.position += 1
        return log_probs[:, 0]

    def _decode(self, state: MIMEState, vectors: Tensor, start: int = 0, cache: list | None = None) -> Tensor:
        """Word vectors [B, T, emb] at positions ``start..`` -> log-probs [B, T, V]."""
        x = self.decoder_projection(self.input_dropout(vectors)) + self._positions(start, vectors.shape[1])
        states, _ = self.decoder(x, state.memory, state.memory_pad_mask, cache=cache)
        return torch.log_softmax(self.output(states), dim=-1)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The decoder stack, its input projection and the output layer."""
        return [*self.decoder_projection.parameters(), *self.decoder.parameters(), *self.output.parameters()]
