"""The base of every expected failure, and the few that have no module of their own.

Every error this package raises on purpose (bad input, an unusable adapter, model or dataset, a file it will not
overwrite) derives from `VlmPeftBenchError`, and also from the builtin class it was before (`ValueError`,
`RuntimeError`, ...), so callers that caught those still do. The command lines (`vlm-peft-bench`, our
`lmms_eval`) print its message after the command's name, with no traceback, and exit with status 2; any other
exception is a bug or an environment failure and keeps its traceback. This module imports nothing, so anything
(the leaderboard included) may use it.
"""


class VlmPeftBenchError(Exception):
    """An expected failure: the CLIs print its message (no traceback) and exit with status 2."""


class OutFolderError(VlmPeftBenchError, FileExistsError):
    """An output folder that already holds something the command will not mix with or overwrite."""
