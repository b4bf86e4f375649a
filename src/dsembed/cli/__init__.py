"""``dsembed`` command line: a thin layer over the Python API."""

from .main import app

__all__ = ["app"]
