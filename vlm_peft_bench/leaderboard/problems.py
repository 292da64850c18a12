"""Input files the leaderboard cannot use, named one per line, all at once.

Every reader raises `BadFile` (the file, what is wrong, what to do) for input it cannot trust; the builder
gathers them and raises one `BadInputs` listing every bad file, or, with --skip-bad, leaves the skippable ones
out and records each in leaderboard.json (`inputs.skipped` and a note). Nothing is written while any remain.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlm_peft_bench.leaderboard import LeaderboardError

RERUN = "re-run that evaluation, or remove the file"


class BadFile(LeaderboardError):
    """One input file that cannot be used: `file` (as shown), `what` is wrong, `fix` says what to do."""

    def __init__(self, file: str, what: str, fix: str = RERUN, skippable: bool = True):
        self.problem = Problem(str(file), what, fix, skippable)
        super().__init__(self.problem.line())


@dataclass(frozen=True)
class Problem:
    file: str
    what: str
    fix: str
    skippable: bool = True  # --skip-bad may leave it out (not the reported-results YAML, named explicitly)

    def line(self) -> str:
        return f"{self.file}: {self.what}; {self.fix}"

    def record(self) -> dict:
        return {"file": self.file, "problem": self.what}


def ordered(problems: list[Problem]) -> list[Problem]:
    """Each problem once, by file: the same inputs give the same message and the same inputs.skipped."""
    return sorted(set(problems), key=lambda p: (p.file, p.what))


class BadInputs(LeaderboardError):
    """Every bad input of one build; the message lists them all and says how to go on."""

    def __init__(self, problems: list[Problem]):
        self.problems = ordered(problems)
        count = len(self.problems)
        lines = [f"{count} input file{'s' if count != 1 else ''} cannot be used (nothing was written):"]
        lines += [f"  - {p.line()}" for p in self.problems]
        if all(p.skippable for p in self.problems):
            lines.append("Fix or remove them, or build with --skip-bad to leave them out (each is then named in "
                         "leaderboard.json under inputs.skipped and in the notes).")
        else:
            lines.append("Fix them and build again (--skip-bad leaves out results, sample logs, cards and "
                         "repr-rank files, never the reported-results file).")
        super().__init__("\n".join(lines))
