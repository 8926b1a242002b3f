"""``empdg-compare experiment=NAME [group_by=ablation] [compare.baseline=RUN]``: tabulate an experiment's runs.

The work is :func:`empdg.evaluation.comparison.run_compare`; the settings are ``conf/compare.yaml``.

Why this command composes from Hydra's config store: ``experiment=NAME`` names an MLflow experiment
here, while ``experiment`` is also the config group of train.py's presets in the same config folder,
and Hydra reads ``X=VALUE`` as a group choice whenever a group ``X`` exists on its search path. So
``compare.yaml`` and the ``paths`` group it uses are read from that folder into Hydra's config store
while this command runs (and taken out again after it) and the app searches the store alone: there is
no ``experiment`` group on its search path and ``experiment=NAME`` is its own key -- no argument rewriting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from empdg.config import CONFIG_DIR
from empdg.config.hydra_errors import reports_compose_errors
from empdg.errors import exit_on_user_error
from empdg.evaluation.comparison import run_compare

CONFIG_NAME = "compare"
GROUPS = ("paths",)  # the config groups compare.yaml's defaults list uses


@contextlib.contextmanager
def stored_config() -> Iterator[None]:
    """``conf/compare.yaml`` and the groups it uses in Hydra's config store, for the time of the command.

    Taken out afterwards: a config store entry named like a file config would be matched against that
    file (Hydra's "automatic schema matching") when the same process composes it from the folder later.
    """
    store = ConfigStore.instance()
    before = {None: set(store.repo), **{group: set(store.repo.get(group, {})) for group in GROUPS}}
    store.store(name=CONFIG_NAME, node=OmegaConf.load(CONFIG_DIR / f"{CONFIG_NAME}.yaml"))
    for group in GROUPS:
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            store.store(group=group, name=path.stem, node=OmegaConf.load(path))
    try:
        yield
    finally:  # only what was added here goes
        for group, kept in before.items():
            entries = store.repo if group is None else store.repo.get(group, {})
            for key in set(entries) - kept:
                entries.pop(key)


@reports_compose_errors  # Hydra's own composition errors: `error: <message>`, exit 2
@hydra.main(version_base="1.3", config_path=None, config_name=CONFIG_NAME)
def _compare(cfg: DictConfig) -> None:
    with exit_on_user_error():  # no such experiment, no matching runs, a bad baseline: `error: ...`, exit 2
        run_compare(cfg)


def main() -> None:
    with stored_config():
        _compare()
