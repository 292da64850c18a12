"""Intervention positions in pyreft's notation, extended with a middle group and `all`.

`f3+l3` means the first 3 and the last 3 prompt tokens (pyreft's own syntax); we add `m3`, the 3 tokens
around the middle of the prompt, and `all`, every prompt token (steering vectors; it stands alone). Positions
index the prompt as the language model sees it (image tokens included) and are counted from its first real
token, so under left padding each shifts by the pad length.
"""

from __future__ import annotations

import re

from vlm_peft_bench.adapters.detect import AdapterError

_GROUP = re.compile(r"^([fml])(\d+)$")
ORDER = ("f", "m", "l")
ALL = "all"


def parse_positions(spec: str) -> dict[str, int]:
    """`f3+m3+l3` -> {"f": 3, "m": 3, "l": 3}; `all` -> {"all": 0}."""
    if str(spec).strip() == ALL:
        return {ALL: 0}
    groups: dict[str, int] = {}
    for part in str(spec).split("+"):
        match = _GROUP.match(part.strip())
        if not match or match.group(1) in groups or int(match.group(2)) < 1:
            raise AdapterError(f"positions={spec!r}: use groups like f3, m3, l3 joined by '+' (e.g. f5+l5), "
                               "or all")
        groups[match.group(1)] = int(match.group(2))
    return {k: groups[k] for k in ORDER if k in groups}


def position_groups(spec: str | dict[str, int], length: int) -> list[list[int]]:
    """Per group (in f, m, l order), the prompt positions it covers for a prompt of `length` tokens; `spec` is the
    notation or what `parse_positions` made of it.

    Groups never reach past the prompt: a prompt shorter than the groups ask for gets fewer positions.
    """
    groups = spec if isinstance(spec, dict) else parse_positions(spec)
    out = []
    for kind, n in groups.items():
        n = min(n, length)
        if kind == ALL:
            out.append(list(range(length)))
        elif kind == "f":
            out.append(list(range(n)))
        elif kind == "l":
            out.append(list(range(length - n, length)))
        else:
            start = max(0, (length - n) // 2)
            out.append(list(range(start, start + n)))
    return out
