"""Run the ``dsembed`` command line in this process and SIGKILL it at a chosen moment (fault injection).

    DSEMBED_FAULT=time:2.5                       python _faulty_cli.py distill ...   # after 2.5 s
    DSEMBED_FAULT=call:pkg.module:Class.method:2 python _faulty_cli.py distill ...   # on entering the 2nd call

A real ``kill -9``: no exception handler, ``finally`` block or atexit hook runs, exactly as when a
machine's OOM killer or a scheduler ends the job. Only this test helper patches anything.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import threading
from typing import Any


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(spec: str) -> None:
    kind, _, rest = spec.partition(":")
    if kind == "time":
        threading.Timer(float(rest), _die).start()
        return
    if kind != "call":
        raise SystemExit(f"unknown fault {spec!r}")
    module_name, qualname, nth = rest.split(":")
    owner: Any = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, attr)
    calls = {"n": 0}

    @functools.wraps(real)
    def trap(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == int(nth):
            _die()
        return real(*args, **kwargs)

    setattr(owner, attr, staticmethod(trap) if isinstance(owner.__dict__.get(attr), staticmethod) else trap)


if __name__ == "__main__":
    fault = os.environ.get("DSEMBED_FAULT")
    if fault:
        _arm(fault)
    from dsembed.cli import app

    app(sys.argv[1:], prog_name="dsembed")
