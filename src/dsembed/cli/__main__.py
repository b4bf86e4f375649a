"""``python -m dsembed.cli``: the same as the ``dsembed`` command."""

from . import app

app()
