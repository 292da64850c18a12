"""stdout carries only machine output (`--json`, results): notices that libraries print there go to stderr."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what is printed on stdout inside the block to stderr. pyvene (imported by pyreft) prints "nnsight is
    not detected. Please install via 'pip install nnsight' for nnsight backend." on stdout when first imported."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
