"""Micro-benchmarks (run as modules, e.g. ``python -m empdg.benchmarks.decode``)."""
