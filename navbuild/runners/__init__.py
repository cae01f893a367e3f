"""Runners: how each model format is executed on numpy feeds (torch eager, ONNX Runtime)."""

from __future__ import annotations

from navbuild.runners.factory import Runner, make_runner

__all__ = ["Runner", "make_runner"]
