"""Hydra schemas of the ``model`` group: one per registered generator name, from its settings dataclass.

The schema of ``schema/model/<name>`` is the generator's settings dataclass plus the run-level keys
every model group has (``name``, ``embeddings``, ``init_from``), so ``conf/model/<name>.yaml`` lists
only what differs from the dataclass defaults, and an unknown key or a wrong type fails while Hydra
composes, naming ``model.<key>``. Values that are typed right but impossible (sizes that do not
divide, contradictory switches) are the dataclass's own checks, when the generator is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from empdg.models.registry import registered_generators
from empdg.models.settings import GeneratorSettings


@dataclass
class EmbeddingsSettings:
    path: Optional[str] = None  # local GloVe-format text file with emb_dim-d vectors
    source: Optional[str] = None  # packaged vectors (empdg[weights]): glove-6b-50d, with model.emb_dim=50
    freeze: bool = False  # keep these vectors fixed; a pretrained generator (model.pretrained): its own vectors


_schemas: dict[type, type] = {}


def model_group_schema(settings_class: type[GeneratorSettings]) -> type:
    """``settings_class`` with the run-level keys of the model group added (one class per settings class)."""
    if settings_class not in _schemas:
        _schemas[settings_class] = dataclasses.make_dataclass(
            f"{settings_class.__name__}ModelGroup",
            [
                ("name", str, field(default=MISSING)),
                ("embeddings", EmbeddingsSettings, field(default_factory=EmbeddingsSettings)),
                ("init_from", Optional[str], field(default=None)),  # a checkpoint to take generator weights from
            ],
            bases=(settings_class,),
        )
    return _schemas[settings_class]


def register_model_schemas(store: Any) -> None:
    """Store ``schema/model/<name>`` for every registered generator name (again: later ones are added)."""
    for name, cls in registered_generators().items():
        store.store(group="schema/model", name=name, node=model_group_schema(cls.settings_class))
