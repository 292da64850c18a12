"""The error every adapter problem raises. (Which method a saved folder holds is recognised by the method registry:
`vlm_peft_bench.methods.table.recognise`.)"""

from __future__ import annotations

from vlm_peft_bench.errors import VlmPeftBenchError


class AdapterError(VlmPeftBenchError, ValueError):
    """An adapter that cannot be used, with what is wrong and how to fix it."""
