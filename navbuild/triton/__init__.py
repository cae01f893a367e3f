"""Triton Inference Server: model configurations (pure), model repositories, the embedded server."""
