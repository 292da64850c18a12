"""Imports that print on stdout, made quiet: stdout carries only machine output (`--json`), notices go to stderr."""

from __future__ import annotations

import contextlib
import importlib
import sys
from types import ModuleType


def quiet_import(name: str) -> ModuleType:
    """Import `name` with anything it prints sent to stderr. pyvene (imported by pyreft) prints "nnsight is not
    detected. Please install via 'pip install nnsight' for nnsight backend." on stdout when first imported."""
    with contextlib.redirect_stdout(sys.stderr):
        return importlib.import_module(name)
