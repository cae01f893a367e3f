"""navbuild: a build tool that takes a trained model to its fastest correct deployable form."""

from __future__ import annotations

from navbuild.version import __version__

__all__ = ["build", "plan", "export", "load", "__version__"]


def build(*args, **kwargs):
    """Build a recipe; see :func:`navbuild.api.build`."""
    from navbuild.api import build as _build

    return _build(*args, **kwargs)


def plan(*args, **kwargs):
    """Plan a recipe without running anything; see :func:`navbuild.api.plan`."""
    from navbuild.api import plan as _plan

    return _plan(*args, **kwargs)


def export(*args, **kwargs):
    """Build a live model at training time and write a ``.nav`` package; see :func:`navbuild.api.export`."""
    from navbuild.api import export as _export

    return _export(*args, **kwargs)


def load(*args, **kwargs):
    """Open and verify a ``.nav`` package; see :func:`navbuild.api.load`."""
    from navbuild.api import load as _load

    return _load(*args, **kwargs)
