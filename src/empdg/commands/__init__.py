"""The commands, one module each, all of one shape: a Hydra app that applies ``runtime.*`` and wraps its
work in :func:`empdg.errors.exit_on_user_error` (a user mistake: one ``error:`` line, exit status 2), under
:func:`empdg.config.hydra_errors.reports_compose_errors` (the same for Hydra's own composition errors).

Installed as console scripts (``empdg-train``, ``empdg-sweep``, ``empdg-evaluate``, ``empdg-chat``,
``empdg-compare``, ``empdg-register``) and reachable as ``python -m empdg.<name>`` (``train.py`` and
``sweep.py`` in the checkout). The work itself lives in the layers below; these modules only wire it
to the command line.
"""
