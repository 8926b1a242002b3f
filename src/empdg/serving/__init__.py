"""Serving a trained generator to people: the terminal chat session (and, later, model servers)."""
