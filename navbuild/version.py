"""navbuild's version: what packages and summaries record as the tool that made them."""

__version__ = "0.1.0"
