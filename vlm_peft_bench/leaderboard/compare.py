"""When results may share a table: the same base model (by hash), prompt template and system prompt (a board),
and for each task the same version, split, items, prompt and generation settings and dataset (a group).

Results that differ are never mixed: they land in separate boards or groups, each labelled with what differs,
and `strict=True` refuses instead, naming the difference and the files. Two things are refused always: results
whose settings agree but whose evaluated inputs differ (the sample logs disagree), and two results of the same
model on the same group (a duplicate run: which one counts would be a silent choice).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from vlm_peft_bench.leaderboard import LeaderboardError
from vlm_peft_bench.leaderboard.results import TaskResult
from vlm_peft_bench.leaderboard.tasks import task_order

FIELD_NAMES = {
    "base": "base model", "base_hash": "base model hash", "prompt_template": "prompt template",
    "system_instruction": "system prompt", "version": "task version", "split": "split", "n": "number of items",
    "limit": "--limit", "offset": "offset", "num_fewshot": "few-shot examples", "task_hash": "lmms-eval task hash",
    "prompt_kwargs": "task prompt (pre/post prompt)", "generation_kwargs": "generation settings",
    "dataset": "dataset", "task": "task",
}


@dataclass
class Group:
    id: str
    board: str
    task: str
    fingerprint: dict
    label: str = ""
    members: list[TaskResult] = field(default_factory=list)


@dataclass
class Board:
    id: str
    key: dict
    label: str = ""
    groups: list[Group] = field(default_factory=list)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _show(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 70 else text[:67] + "..."


def board_key(result: TaskResult) -> dict:
    return {"base": result.base["name"] if not result.base.get("hash") else None, "base_hash": result.base.get("hash"),
            "prompt_template": result.prompt_template, "system_instruction": result.system_instruction}


def differences(a: dict, b: dict) -> list[str]:
    """'field: a vs b' for every field that differs."""
    return [f"{FIELD_NAMES.get(k, k)}: {_show(a.get(k))} vs {_show(b.get(k))}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def row_key(result: TaskResult) -> str:
    if result.adapter is None:
        return "base"
    return result.adapter.get("sha256") or f"path:{result.adapter.get('path')}"


def group_results(results: list[TaskResult], strict: bool = False) -> tuple[list[Board], list[str]]:
    """Boards of groups of comparable results, and notes naming every separation that was made."""
    boards: dict[str, Board] = {}
    for result in results:
        key = board_key(result)
        board = boards.setdefault(_digest(key), Board(id="", key=key))
        fp_id = _digest([key, result.fingerprint])
        group = next((g for g in board.groups if g.id == fp_id), None)
        if group is None:
            group = Group(id=fp_id, board="", task=result.task, fingerprint=result.fingerprint)
            board.groups.append(group)
        group.members.append(result)
    notes = _label_boards(list(boards.values()), strict)
    for board in boards.values():
        notes += _label_groups(board, strict)
        for group in board.groups:
            _check_members(group)
    ordered = sorted(boards.values(), key=lambda b: (b.label, b.id))
    return ordered, notes


def _label_boards(boards: list[Board], strict: bool) -> list[str]:
    notes = []
    by_name: dict[str, list[Board]] = {}
    for board in boards:
        member = board.groups[0].members[0]
        board.id = f"b{_digest(board.key)[:10]}"
        board.label = member.base["name"]
        by_name.setdefault(board.label, []).append(board)
    for name, same in by_name.items():
        if len(same) < 2:
            continue
        same.sort(key=lambda b: b.id)
        first = same[0].key
        for index, board in enumerate(same[1:], 2):
            diff = "; ".join(differences(first, board.key))
            files = ", ".join(sorted({m.file for g in board.groups for m in g.members})[:3])
            if strict:
                raise LeaderboardError(f"results for base {name} are not comparable: {diff} (e.g. {files}); "
                                       "re-run them with the same model and prompt, or build without --strict "
                                       "to keep them in separate groups")
            board.label = f"{name} #{index}"
            notes.append(f"{board.label} kept apart from {name}: {diff}")
    for board in boards:
        for group in board.groups:
            group.board = board.id
    return notes


def _label_groups(board: Board, strict: bool) -> list[str]:
    notes = []
    by_task: dict[str, list[Group]] = {}
    for group in board.groups:
        by_task.setdefault(group.task, []).append(group)
    for task, groups in by_task.items():
        groups.sort(key=lambda g: g.id)
        if len(groups) == 1:
            groups[0].id = f"g{groups[0].id[:10]}"
            groups[0].label = task
            continue
        varying = sorted({k for g in groups for k in g.fingerprint if g.fingerprint[k] != groups[0].fingerprint[k]})
        for group in groups:
            group.id = f"g{group.id[:10]}"
            group.label = task + " [" + ", ".join(f"{FIELD_NAMES.get(k, k)} {_show(group.fingerprint[k])}"
                                                  for k in varying) + "]"
        groups.sort(key=lambda g: (g.label, g.id))
        diff = "; ".join(differences(groups[0].fingerprint, groups[1].fingerprint))
        if strict:
            files = "; ".join(g.members[0].file for g in groups)
            raise LeaderboardError(f"results for {task} on {board.label} are not comparable: {diff} (files: {files}); "
                                   "re-run them with the same settings, or build without --strict to keep them in "
                                   "separate groups")
        notes.append(f"{task} on {board.label}: {len(groups)} incomparable variants kept in separate groups ({diff})")
    board.groups.sort(key=lambda g: (task_order(g.task), g.label, g.id))
    return notes


def _check_members(group: Group) -> None:
    seen: dict[str, TaskResult] = {}
    for member in group.members:
        key = row_key(member)
        if key in seen:
            raise LeaderboardError(f"duplicate results for {member.adapter['path'] if member.adapter else 'the base'} "
                                   f"on {group.label}: {seen[key].file} and {member.file}; keep one of them")
        seen[key] = member
    hashed = [m for m in group.members if m.inputs_sha256]
    for member in hashed[1:]:
        if member.inputs_sha256 != hashed[0].inputs_sha256:
            raise LeaderboardError(f"{group.label}: {hashed[0].file} and {member.file} agree on every setting but "
                                   "their sample logs show different evaluated inputs (items, prompts or targets); "
                                   "they cannot share a group")
