"""The documentation (README.md and docs/*.md) against the code: its commands run, its reference tables are complete.

- Shell blocks: every fenced block whose info string is bash, sh, shell or console carries a marker on the line
  directly before its fence, `<!-- doc-test: run -->` (the block runs here) or `<!-- doc-test: skip: <reason> -->`
  (why it cannot: it needs a GPU, the Hub, or more than a few minutes). A shell block with neither, an empty reason,
  a marker that is not followed by a shell block, and a fence with no info string fail, naming file and line.
- Run blocks (slow; one test per block, id `file:line` of its fence) run with `bash -euo pipefail -c <block>` from
  the repository root, with the directory of this test's Python first on PATH (so `vlm-peft-bench`, `lmms_eval` and
  `python` are this environment's), under a 600 s timeout. Each must exit 0 and leave `git status --porcelain` as it
  found it: run blocks write only to git-ignored places (`results/`, `out/`) or /tmp.
- `vlm-peft-bench`: docs/cli.md has a `### vlm-peft-bench <command>` heading and an `| option | meaning |` table for
  the top-level parser and every (sub)command of `vlm_peft_bench.cli.build_parser()`; the table lists every option
  string and positional of that parser, and nothing else. Every `--option` written after a `vlm-peft-bench` command
  anywhere in the documentation exists for that command.
- `lmms_eval`: every `--option` written after `lmms_eval` / `lmms-eval` / `-m vlm_peft_bench.lmms.cli` exists in
  lmms-eval's own parser or is ours (`--no_resume`).
- The `vlreft` model's arguments: the source of truth is the signature of `VLReft.__init__`
  (vlm_peft_bench/lmms/vlreft.py), minus `self` and `**kwargs` (any other key is refused there as unknown). The
  `model_arg` table of docs/vlreft.md lists exactly those, and every key passed through `--model_args` to `--model
  vlreft` in the documentation is one of them.
- README.md has at most 150 lines, every docs page is linked from README.md or docs/README.md, and every relative
  link (`](path)` or `](path#anchor)`) points to an existing file and, in a Markdown file, to an existing heading.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SHELL = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"^\s*<!--\s*doc-test:(?P<body>.*?)-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
README_MAX_LINES = 150
RUN_TIMEOUT_S = 600
OUR_LMMS_EVAL_OPTIONS = {"--no_resume"}  # vlm_peft_bench/lmms/cli.py: removed from argv before lmms-eval parses it


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


@dataclass
class Block:
    file: Path
    line: int  # 1-based line of the opening fence
    info: str  # the info string's first word, lower case ('' when none)
    code: str
    marker: str | None  # 'run', 'skip', or None
    reason: str = ""
    marker_line: int | None = None

    @property
    def where(self) -> str:
        return f"{rel(self.file)}:{self.line}"

    @property
    def shell(self) -> bool:
        return self.info in SHELL

    def script(self) -> str:
        """What bash runs: the block itself; for `console`, only the `$ ` lines without their prompt."""
        if self.info != "console":
            return self.code
        return "\n".join(line[2:] for line in self.code.splitlines() if line.startswith("$ "))


@dataclass
class Page:
    file: Path
    blocks: list[Block]
    problems: list[str]  # markers in the wrong place, malformed markers, unterminated fences
    prose: list[tuple[int, str]]  # (line number, text) of the lines outside fenced blocks


def parse(path: Path) -> Page:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, problems, prose = [], [], []
    pending: tuple[int, str, str] | None = None  # (line, kind, reason) of a marker waiting for its fence
    i = 0
    while i < len(lines):
        line = lines[i]
        number = i + 1
        fence = FENCE.match(line)
        if fence:
            indent, mark = len(fence["indent"]), fence["fence"]
            info = fence["info"].strip().split()[0].lower() if fence["info"].strip() else ""
            body, j = [], i + 1
            closing = re.compile(rf"^\s*{re.escape(mark[0])}{{{len(mark)},}}\s*$")
            while j < len(lines) and not closing.match(lines[j]):
                body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j].lstrip())
                j += 1
            if j == len(lines):
                problems.append(f"{rel(path)}:{number}: a fenced block that is never closed")
            kind, reason, marker_line = (pending[1], pending[2], pending[0]) if pending else (None, "", None)
            block = Block(path, number, info, "\n".join(body), kind, reason, marker_line)
            if pending and pending[0] != number - 1:
                problems.append(f"{rel(path)}:{pending[0]}: a doc-test marker must be on the line directly before "
                                "its fence")
            elif pending and not block.shell:
                problems.append(f"{rel(path)}:{pending[0]}: a doc-test marker before a `{info or 'plain'}` block; "
                                "markers go only before bash, sh, shell or console blocks")
            blocks.append(block)
            pending = None
            i = j + 1
            continue
        marker = MARKER.match(line)
        if marker:
            if pending:
                problems.append(f"{rel(path)}:{pending[0]}: a doc-test marker not followed by a shell block")
            body = marker["body"].strip()
            if body == "run":
                pending = (number, "run", "")
            elif body.startswith("skip:") or body == "skip":
                pending = (number, "skip", body[len("skip:"):].strip() if body.startswith("skip:") else "")
            else:
                problems.append(f"{rel(path)}:{number}: unknown doc-test marker {line.strip()!r}; use "
                                "`<!-- doc-test: run -->` or `<!-- doc-test: skip: <reason> -->`")
                pending = None
        elif pending and line.strip():
            problems.append(f"{rel(path)}:{pending[0]}: a doc-test marker not followed by a shell block")
            pending = None
        prose.append((number, line))
        i += 1
    if pending:
        problems.append(f"{rel(path)}:{pending[0]}: a doc-test marker not followed by a shell block")
    return Page(path, blocks, problems, prose)


PAGES = [parse(path) for path in doc_files()]
BLOCKS = [block for page in PAGES for block in page.blocks]
RUN_BLOCKS = [block for block in BLOCKS if block.shell and block.marker == "run"]


# --- markers ---------------------------------------------------------------------------------------------------


def test_docs_exist():
    expected = {"README.md", "vlreft.md", "adapters.md", "steering.md", "training.md", "tasks.md", "leaderboard.md",
                "scale.md", "benchmarks.md", "libraries.md", "troubleshooting.md", "design.md", "cli.md"}
    missing = sorted(name for name in expected if not (DOCS / name).is_file())
    assert not missing, f"docs/ lacks {missing}"


def test_markers_well_placed():
    problems = [problem for page in PAGES for problem in page.problems]
    assert not problems, "doc-test markers:\n" + "\n".join(problems)


def test_every_fence_names_its_language():
    bare = [block.where for block in BLOCKS if not block.info]
    assert not bare, ("fenced blocks without an info string (use bash for commands, text for anything else): "
                      + ", ".join(bare))


def test_every_shell_block_is_marked():
    unmarked = [f"{block.where}: a {block.info} block without `<!-- doc-test: run -->` or "
                "`<!-- doc-test: skip: <reason> -->` on the line before it" for block in BLOCKS
                if block.shell and block.marker is None]
    no_reason = [f"{rel(block.file)}:{block.marker_line}: `doc-test: skip` needs a reason after `skip:`"
                 for block in BLOCKS if block.shell and block.marker == "skip" and not block.reason]
    empty = [f"{block.where}: an empty run block" for block in RUN_BLOCKS if not block.script().strip()]
    problems = unmarked + no_reason + empty
    assert not problems, "\n".join(problems)


def test_marker_parser_catches_mistakes(tmp_path):
    """The checks above see what they should: an unmarked block, an empty reason, a stray marker."""
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "```bash", "echo unmarked", "```",
        "<!-- doc-test: skip: -->", "```sh", "echo no reason", "```",
        "<!-- doc-test: run -->", "some prose", "",
        "<!-- doc-test: run -->", "```text", "not a shell block", "```",
        "<!-- doc-test: perhaps -->",
        "<!-- doc-test: run -->", "```bash", "echo fine", "```",
        "```", "no info string", "```",
    ]) + "\n")
    parsed = parse(page)
    assert [(b.line, b.info, b.marker) for b in parsed.blocks] == [
        (1, "bash", None), (5, "sh", "skip"), (12, "text", "run"), (17, "bash", "run"), (20, "", None)]
    assert parsed.blocks[1].reason == ""
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in parsed.problems] == ["8", "11", "15"]


# --- run blocks --------------------------------------------------------------------------------------------------


def git_status() -> str | None:
    """`git status --porcelain` of the checkout, or None outside a git checkout or without git."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return None
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # do not refresh the index: other processes may be using it
    done = subprocess.run([git, "status", "--porcelain"], cwd=REPO, env=env, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


LEADERBOARD = REPO / "leaderboard"
PLOTS = ("leaderboard.png", "leaderboard.svg", "repr_rank.png", "repr_rank.svg", "sweeps.png", "sweeps.svg")


def plots_drawn_by_another_matplotlib() -> bool:
    """The committed plots carry the matplotlib version that drew them; another one draws other bytes."""
    from vlm_peft_bench.leaderboard.plots import RENDERER

    return any(RENDERER.encode() not in (LEADERBOARD / name).read_bytes() for name in PLOTS
               if (LEADERBOARD / name).is_file())


def scratch_checkout(into: Path) -> Path:
    """A copy of the checkout's files (no .git, environments or outputs), for a block that rewrites committed
    files where this environment cannot reproduce them byte for byte."""
    skip = shutil.ignore_patterns(".git", ".venv*", "venv*", "out", "results", "__pycache__", "*.egg-info",
                                  ".pytest_cache", ".ruff_cache", "build", "dist")
    shutil.copytree(REPO, into, ignore=lambda folder, names: skip(folder, names) - (
        {"results"} if Path(folder) == LEADERBOARD else set()))
    return into


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.where for block in RUN_BLOCKS])
def test_run_block(block: Block, tmp_path):
    where = REPO
    if "leaderboard/build.sh" in block.script() and plots_drawn_by_another_matplotlib():
        # another matplotlib would rewrite the committed plots: rebuild in a copy, and check everything but the
        # plots came out byte for byte (tests/test_leaderboard.py checks the plots under the matplotlib that drew them)
        where = scratch_checkout(tmp_path / "checkout")
    before = git_status()
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.script()], cwd=where, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the block's whole process group: bash and what it started
        output, _ = proc.communicate()
        pytest.fail(f"{block.where}: still running after {RUN_TIMEOUT_S} s:\n{tail(output)}")
    assert proc.returncode == 0, f"{block.where}: exit status {proc.returncode}:\n{tail(output)}"
    if where != REPO:
        rebuilt = sorted(p.name for p in (where / "leaderboard").iterdir() if p.is_file() and p.name not in PLOTS)
        differ = [n for n in rebuilt if (where / "leaderboard" / n).read_bytes() != (LEADERBOARD / n).read_bytes()]
        assert not differ, f"{block.where}: {differ} differ from the committed leaderboard"
    after = git_status()
    if before is not None and after is not None:
        changed = sorted(set(before.splitlines()) ^ set(after.splitlines()))
        assert not changed, (f"{block.where} changed the working tree (run blocks may write only to git-ignored "
                             f"places such as results/ and out/, or /tmp): " + "; ".join(changed))


# --- the vlm-peft-bench command line --------------------------------------------------------------------------


def commands(parser: argparse.ArgumentParser, name: str = "vlm-peft-bench"):
    """(name, parser, subcommands or None) for the parser and each of its (nested) subcommands."""
    subs = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    yield name, parser, subs
    if subs is not None:
        for sub_name, sub in subs.choices.items():
            yield from commands(sub, f"{name} {sub_name}")


def options(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings and positionals (by dest) of one parser, without help and subcommand actions."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        found.update(action.option_strings or [action.dest])
    return found


def documented_commands(path: Path) -> dict[str, tuple[int, list[str]]]:
    """`### vlm-peft-bench ...` headings of the page: name -> (line, the first column of the table under it)."""
    found: dict[str, tuple[int, list[str]]] = {}
    current = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#"):
            heading = re.match(r"^###\s+`?(vlm-peft-bench(?:\s+[\w-]+)*)`?\s*$", line)
            current = " ".join(heading[1].split()) if heading else None
            if current is not None:
                if current in found:
                    raise AssertionError(f"{rel(path)}:{number}: {current} documented twice")
                found[current] = (number, [])
        elif current and line.startswith("|"):
            first = line.strip().strip("|").split("|")[0].strip()
            if first.lower() == "option" or set(first) <= set("-: "):
                continue  # the header and its separator
            found[current][1].extend(token.split()[0] for token in re.findall(r"`([^`]+)`", first))
    return found


def test_cli_reference_matches_the_parser():
    from vlm_peft_bench.cli import build_parser

    page = DOCS / "cli.md"
    documented = documented_commands(page)
    problems = []
    expected = {}
    for name, parser, subs in commands(build_parser()):
        opts = options(parser)
        if opts or subs is None:  # a leaf command, or one with options of its own
            expected[name] = opts
    for name, opts in expected.items():
        if name not in documented:
            problems.append(f"{name}: no `### {name}` heading in docs/cli.md (its options: {sorted(opts)})")
            continue
        line, listed = documented[name]
        missing = sorted(opts - set(listed))
        extra = sorted(set(listed) - opts)
        if missing:
            problems.append(f"docs/cli.md:{line}: {name}: undocumented {missing}")
        if extra:
            problems.append(f"docs/cli.md:{line}: {name}: documented but not accepted {extra}")
        twice = sorted({o for o in listed if listed.count(o) > 1})
        if twice:
            problems.append(f"docs/cli.md:{line}: {name}: listed twice {twice}")
    for name, (line, _) in documented.items():
        if name not in expected:
            problems.append(f"docs/cli.md:{line}: {name}: no such command (or one without options of its own)")
    assert not problems, "docs/cli.md against vlm_peft_bench.cli.build_parser():\n" + "\n".join(problems)


# Commands written in the documentation: each shell block (continuation lines joined, comments dropped) and each
# inline code span, cut into simple commands at `&&`, `||`, `;`, `|`, `$(` and `)`.
SEPARATORS = re.compile(r"&&|\|\||[;|()\n]|\$\(")
OPTION = re.compile(r"(?<![\w/.=-])--[A-Za-z][\w-]*")


def written_commands() -> list[tuple[str, str]]:
    """(where, simple command) for every command written in README.md and docs/*.md."""
    found = []
    for page in PAGES:
        for block in page.blocks:
            if not block.shell:
                continue
            script = re.sub(r"\\\n", " ", block.script())
            script = "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in script.splitlines())
            found += [(block.where, part.strip()) for part in SEPARATORS.split(script) if part.strip()]
        for number, line in page.prose:
            for span in re.findall(r"`([^`]+)`", line):
                found += [(f"{rel(page.file)}:{number}", part.strip()) for part in SEPARATORS.split(span)
                          if part.strip()]
    return found


def command_from(text: str, names: tuple[str, ...]) -> str | None:
    """The part of `text` from the first word that is (or ends in /) one of `names`, or None."""
    words = text.split()
    for i, word in enumerate(words):
        if word.strip("'\"") in names or word.strip("'\"").endswith(tuple("/" + n for n in names)):
            return " ".join(words[i:])
    return None


def test_options_written_in_the_docs_exist():
    from vlm_peft_bench.cli import build_parser

    parsers = {name: (parser, subs) for name, parser, subs in commands(build_parser())}
    problems = []
    for where, text in written_commands():
        command = command_from(text, ("vlm-peft-bench", "vlm_peft_bench.cli"))
        if command is None:
            continue
        name, words = "vlm-peft-bench", command.split()[1:]
        while words and parsers[name][1] is not None and words[0] in parsers[name][1].choices:
            name = f"{name} {words.pop(0)}"
        known = options(parsers[name][0]) | {"--help"}
        unknown = sorted({o for o in OPTION.findall(" ".join(words)) if o not in known})
        if unknown:
            problems.append(f"{where}: `{name}` has no option {', '.join(unknown)} (in `{command}`)")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def lmms_eval_options() -> set[str]:
    from lmms_eval.__main__ import parse_eval_args

    saved = sys.argv
    sys.argv = ["lmms_eval"]
    try:
        parser, _ = parse_eval_args()
    finally:
        sys.argv = saved
    return {s for action in parser._actions for s in action.option_strings} | OUR_LMMS_EVAL_OPTIONS


def lmms_eval_commands() -> list[tuple[str, str]]:
    found = []
    for where, text in written_commands():
        command = command_from(text, ("lmms_eval", "lmms-eval", "vlm_peft_bench.lmms.cli"))
        if command is not None:
            found.append((where, command))
    return found


def test_lmms_eval_options_written_in_the_docs_exist(lmms_eval_options):
    problems = []
    for where, command in lmms_eval_commands():
        unknown = sorted({o for o in OPTION.findall(command) if o not in lmms_eval_options})
        if unknown:
            problems.append(f"{where}: lmms_eval has no option {', '.join(unknown)} (in `{command}`)")
    assert not problems, "\n".join(problems)


# --- the vlreft model's arguments --------------------------------------------------------------------------------


def vlreft_arguments() -> set[str]:
    """What `--model_args` accepts: `VLReft.__init__`'s parameters, minus self and **kwargs (refused as unknown)."""
    from vlm_peft_bench.lmms.vlreft import VLReft

    parameters = inspect.signature(VLReft.__init__).parameters.values()
    return {p.name for p in parameters if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}


def model_arg_table(path: Path) -> tuple[int, list[str]]:
    """(line, first column) of the table whose header's first cell is `model_arg`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].strip("`") == "model_arg":
            names = []
            for row in lines[number + 1:]:
                if not row.startswith("|"):
                    break
                names += [t.split("=")[0] for t in re.findall(r"`([^`]+)`", row.strip().strip("|").split("|")[0])]
            return number, names
    raise AssertionError(f"{rel(path)}: no table with a `model_arg` column")


def test_vlreft_arguments_documented():
    line, documented = model_arg_table(DOCS / "vlreft.md")
    accepted = vlreft_arguments()
    missing = sorted(accepted - set(documented))
    extra = sorted(set(documented) - accepted)
    twice = sorted({a for a in documented if documented.count(a) > 1})
    assert not (missing or extra or twice), (
        f"docs/vlreft.md:{line}: the model_arg table against VLReft.__init__: undocumented {missing}, "
        f"documented but not accepted {extra}, listed twice {twice}")


def test_model_args_written_in_the_docs_exist():
    accepted = vlreft_arguments()
    problems = []
    for where, command in lmms_eval_commands():
        if not re.search(r"--model\s+vlreft\b", command):
            continue
        for value in re.findall(r"--model_args[\s=]+(\S+)", command):
            keys = [item.split("=")[0] for item in value.strip("'\"").split(",") if "=" in item]
            unknown = sorted(set(keys) - accepted)
            if unknown:
                problems.append(f"{where}: vlreft has no model_arg {', '.join(unknown)} (in `{value}`)")
    assert not problems, "\n".join(problems)


# --- README length and links ------------------------------------------------------------------------------------


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (f"README.md has {len(lines)} lines, at most {README_MAX_LINES}: move "
                                            "detail into docs/")


@functools.cache
def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in parse(path).prose:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading[1])  # a link's text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_relative_links_resolve():
    problems = []
    for page in PAGES:
        for number, line in page.prose:
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                    continue
                path_text, _, anchor = target.partition("#")
                path = (page.file.parent / path_text).resolve() if path_text else page.file
                where = f"{rel(page.file)}:{number}"
                if not path.exists():
                    problems.append(f"{where}: {target}: no such file")
                elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                    problems.append(f"{where}: {target}: no heading #{anchor} in {rel(path)}")
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_linked():
    linked = set()
    for page in PAGES:
        if page.file.name != "README.md":
            continue
        for _, line in page.prose:
            for target in LINK.findall(line):
                path_text = target.partition("#")[0]
                if path_text and not re.match(r"^[a-z][a-z0-9+.-]*:", path_text):
                    linked.add((page.file.parent / path_text).resolve())
    orphans = [rel(p) for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages linked from neither README.md nor docs/README.md: {orphans}"
