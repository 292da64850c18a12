"""Every `vlm-peft-bench` command with `--json` prints exactly one JSON document on stdout, nothing else: library
notices (pyvene's "nnsight is not detected", printed when pyreft is first imported) and logs go to stderr. Each
command runs in a fresh process, so import-time prints are seen. A new --json command fails here until it is given
arguments in EXAMPLES (and then must print pure JSON)."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from vlm_peft_bench.cli import build_parser

from .conftest import REPO

ZOO = REPO / "adapters_zoo" / "weights"
EXAMPLES = {  # command path -> arguments for a quick run (pyreft-touching ones, so pyvene's print is provoked)
    ("params",): ["--base", "nanollava-tiny", "--recipe", "reft-r4-all"],
    ("inspect",): [str(ZOO / "reft-r4-all__nanollava-tiny__cvbench_mini"), "--base", "nanollava-tiny"],
    ("spice", "status"): [],
}


def json_commands(parser: argparse.ArgumentParser, path: tuple = ()) -> list[tuple]:
    """Every (nested) subcommand path whose parser has a --json option."""
    found = [path] if any("--json" in a.option_strings for a in parser._actions) else []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += json_commands(sub, path + (name,))
    return found


def test_every_json_command_has_an_example():
    commands = json_commands(build_parser())
    assert ("params",) in commands and ("inspect",) in commands
    assert set(commands) == set(EXAMPLES), "give each --json command arguments in EXAMPLES"


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(EXAMPLES), ids=" ".join)
def test_json_stdout_is_only_json(command, tmp_path):
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, "-m", "vlm_peft_bench.cli", *command, *EXAMPLES[command], "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = json.loads(proc.stdout)  # the whole of stdout
    assert isinstance(document, dict) and document
