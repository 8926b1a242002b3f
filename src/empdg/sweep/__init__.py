"""Optuna studies over Hydra-composed EmpDG runs (driven by ``empdg-sweep``, ``sweep.py`` in the checkout).

The study is data (``conf/sweep/*.yaml``); each trial composes the training config with Hydra's
compose API and runs :func:`empdg.training.run.run_training`, so a trial is exactly a ``train.py`` run.
"""
