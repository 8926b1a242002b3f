"""Serving a trained generator: the terminal chat, the MLflow pyfunc model, registration, a loopback model server."""
