"""The critics and what they read: one object that training, the critic report and the chat score through.

:class:`CriticPanel` holds the critic networks, each one's :class:`~empdg.models.critic_rules.CriticRule`
and the settings every critic input depends on (the emotion floor, whether responses are unit-normed,
whether the critics read the user's feedback, whether they match words); the adversarial game delegates
its critic inputs, conditions and scores to it, and so does the chat: what a critic reads is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from empdg.models.base import EncodedDialogue, Generator
from empdg.models.critic_inputs import (
    CriticCondition,
    ResponseView,
    context_words,
    critic_match_weight,
    critic_response,
    feedback_rows,
    gold_view,
    token_view,
)
from empdg.models.critic_rules import CriticRule, get_critic_rule
from empdg.models.decoding import generated_mask


class CriticPanel:
    """The critics of a run (``critics``, keyed by critic name) and the one way they read a response.

    ``emotion_vocab`` returns the [V] lexicon indicator, ``match_vocab`` the [V] word-match weights of
    ``word_match`` critics (None: none): callables, so buffers follow their module's device.
    """

    def __init__(
        self,
        generator: Generator,
        critics: nn.ModuleDict,
        *,
        emotion_vocab: Callable[[], Tensor],
        match_vocab: Callable[[], Tensor | None] = lambda: None,
        emotion_floor: float = 0.0,
        unit_norm: bool = False,
        feedback: bool = True,
        word_match: bool = False,
    ) -> None:
        self.generator = generator
        self.critics = critics
        self.rules: dict[str, CriticRule] = {name: get_critic_rule(name) for name in critics}
        self._emotion_vocab = emotion_vocab
        self._match_vocab = match_vocab
        self.emotion_floor = emotion_floor
        self.unit_norm = unit_norm
        self.feedback = feedback
        self.word_match = word_match

    def __iter__(self) -> Iterator[str]:
        return iter(self.critics)

    def __len__(self) -> int:
        return len(self.critics)

    @property
    def emotion_vocab(self) -> Tensor:
        return self._emotion_vocab()

    @property
    def match_vocab(self) -> Tensor | None:
        return self._match_vocab()

    # -- responses ---------------------------------------------------------------------------
    def ids_view(self, ids: Tensor) -> ResponseView:
        """Generated token ids (up to the first EOS) as a view."""
        return token_view(self.generator, ids, generated_mask(ids), self.emotion_vocab, self.match_vocab)

    def gold_view(self, batch: dict) -> ResponseView:
        return gold_view(self.generator, batch, self.emotion_vocab, self.match_vocab)

    def rows(self, batch: dict) -> Tensor:
        """The examples the critics read (those with feedback, when they read feedback)."""
        return feedback_rows(batch, self.feedback)

    # -- what each critic reads -------------------------------------------------------------------
    def conditions(
        self,
        batch: dict,
        encoded: EncodedDialogue,
        rows: Tensor,
        *,
        feedback_known: bool = True,
    ) -> dict[str, CriticCondition]:
        """Each critic's condition, restricted to ``rows``; all of it data-side (detached: the critics never train
        the encoders). ``feedback_known=False`` (the chat: the user has not answered yet) gives critics that read
        feedback an empty one (d_F = 0)."""
        conditions = {}
        for name, rule in self.rules.items():
            summary = rule.summary(encoded)[rows].detach()
            condition = CriticCondition(summary, None, None)
            with torch.no_grad():
                if self.feedback and feedback_known:
                    condition.feedback = self.generator.embed_tokens(batch[f"{rule.feedback_key}_ids"][rows])
                    condition.feedback_mask = ~batch[f"{rule.feedback_key}_pad_mask"][rows]
                elif self.feedback:
                    condition.feedback = summary.new_zeros(rows.numel(), 1, self.generator.sizes.emb_dim)
                    condition.feedback_mask = torch.zeros(rows.numel(), 1, dtype=torch.bool, device=rows.device)
                if self.word_match:  # the context's words: the lookups are wasted on other critics
                    words = context_words(self.generator, batch[f"{rule.context_key}_ids"][rows])
                    condition.context_words, condition.context_words_mask = words
            conditions[name] = condition
        return conditions

    def input(self, view: ResponseView, name: str) -> tuple[Tensor, Tensor, Tensor | None]:
        """(vectors, mask, match weight) critic ``name`` reads for ``view``: the one path for every response."""
        rule = self.rules[name]
        vectors, mask = critic_response(view, rule, self.unit_norm, self.emotion_floor)
        return vectors, mask, critic_match_weight(view, rule, self.emotion_floor)

    def score(self, name: str, view: ResponseView, condition: CriticCondition) -> Tensor:
        """[B] critic ``name``'s scores of ``view`` under ``condition``."""
        vectors, mask, weight = self.input(view, name)
        return self.critics[name](vectors, mask, **condition.critic_kwargs(), response_weight=weight)

    def score_replies(self, batch: dict, encoded: EncodedDialogue, ids: Tensor) -> dict[str, Tensor]:
        """Each critic's [N] scores of N generated replies (``ids``) to the N rows of ``batch``, before
        the user's feedback is known (the chat's reranking)."""
        rows = torch.arange(ids.shape[0], device=ids.device)
        conditions = self.conditions(batch, encoded, rows, feedback_known=False)
        view = self.ids_view(ids)
        return {name: self.score(name, view, conditions[name]) for name in self.critics}
