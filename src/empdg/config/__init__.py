"""Where the Hydra configs live and how every command composes them.

The configs ship inside the package (``empdg/conf``), so a non-editable install finds them
through the package, whatever the working directory. ``conf/`` at the repository root is a link
to the same folder, for readers of the checkout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

CONFIG_DIR: Path = Path(__file__).resolve().parent.parent / "conf"


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``config_name`` with overrides, outside or inside a running Hydra app."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def _register() -> None:
    from empdg.config.store import register_configs

    register_configs()


_register()
