"""Benchmark commands: they print figures; no test asserts a timing."""
