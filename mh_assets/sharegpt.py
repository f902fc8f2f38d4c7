"""Validate and normalize ShareGPT / messages conversations into the messages schema.

Every counted record is either kept (normalized) or refused with a reason code; the rules apply in a fixed
order and the first rule a record breaks is its reason. Plain module: no dagster, no torch.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLE_ALIASES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
}

REASONS = (
    "invalid_encoding",
    "invalid_json",
    "not_object",
    "unknown_schema",
    "unknown_role",
    "empty_content",
    "bad_turn_order",
    "no_assistant_reply",
    "duplicate",
)


class RecordError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Kept:
    source: str
    line: int
    schema: str
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class Refused:
    source: str
    line: int
    reason: str
    detail: str
    raw: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "reason": self.reason, "detail": self.detail, "raw": self.raw}


def _turns(obj: dict[str, Any]) -> tuple[str, list[tuple[Any, Any]]]:
    has_conv = isinstance(obj.get("conversations"), list)
    has_msgs = isinstance(obj.get("messages"), list)
    if has_conv == has_msgs:
        raise RecordError("unknown_schema", "need exactly one of a 'conversations' or a 'messages' list")
    schema, items, role_key, content_key = (
        ("sharegpt", obj["conversations"], "from", "value")
        if has_conv
        else ("messages", obj["messages"], "role", "content")
    )
    turns = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or role_key not in item or content_key not in item:
            raise RecordError("unknown_schema", f"turn {i} lacks '{role_key}'/'{content_key}'")
        if not isinstance(item[role_key], str) or not isinstance(item[content_key], str):
            raise RecordError("unknown_schema", f"turn {i}: '{role_key}' and '{content_key}' must be strings")
        turns.append((item[role_key], item[content_key]))
    return schema, turns


def normalize_record(obj: Any) -> tuple[str, list[dict[str, str]]]:
    """Return ``(schema, messages)`` for a valid record, else raise ``RecordError`` (rules 4-9)."""
    if not isinstance(obj, dict):
        raise RecordError("not_object", f"top level is {type(obj).__name__}, not an object")
    schema, turns = _turns(obj)
    messages = []
    for i, (role, content) in enumerate(turns):
        canonical = ROLE_ALIASES.get(role.strip().lower())
        if canonical is None:
            raise RecordError("unknown_role", f"turn {i} has role {role!r}")
        messages.append({"role": canonical, "content": content})
    system = obj.get("system")
    if isinstance(system, str) and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    for i, m in enumerate(messages):
        m["content"] = unicodedata.normalize("NFC", m["content"].strip())
        if not m["content"]:
            raise RecordError("empty_content", f"turn {i} ({m['role']}) is empty")
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise RecordError("bad_turn_order", f"turn {i} after the system prompt is {m['role']}, expected {expected}")
    if not body or body[-1]["role"] != "assistant":
        raise RecordError("no_assistant_reply", "the conversation does not end with an assistant reply")
    return schema, messages


def read_records(path: Path) -> Iterator[tuple[int, bytes | Any]]:
    """Yield ``(line_number, raw_line_bytes)`` for a .jsonl file, ``(element_number, element)`` for a .json list.

    Streams .jsonl files; blank lines are skipped and not counted; a BOM and CRLF endings are accepted. A .json
    file that does not decode or parse as a whole is one record (line 1), refused by the same rules.
    """
    if path.suffix == ".json":
        raw = path.read_bytes()
        try:
            data = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            yield 1, raw
            return
        yield from enumerate(data if isinstance(data, list) else [data], start=1)
        return
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield lineno, line


def _conversation_key(messages: list[dict[str, str]]) -> bytes:
    canon = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(canon.encode()).digest()[:16]  # 16 bytes: compact, collisions negligible


def validate(records: Iterable[tuple[str, int, bytes | Any]]) -> Iterator[Kept | Refused]:
    """Apply the rules in order to ``(source, line, raw)`` records; duplicates are checked across all of them."""
    seen: set[bytes] = set()
    for source, line, raw in records:
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Refused(source, line, "invalid_encoding", str(exc), raw.decode("utf-8", "backslashreplace"))
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                yield Refused(source, line, "invalid_json", str(exc), text)
                continue
        else:
            obj, text = raw, json.dumps(raw, ensure_ascii=False)
        try:
            schema, messages = normalize_record(obj)
        except RecordError as exc:
            yield Refused(source, line, exc.reason, exc.detail, text)
            continue
        key = _conversation_key(messages)
        if key in seen:
            yield Refused(source, line, "duplicate", "same conversation as an earlier kept record", text)
            continue
        seen.add(key)
        yield Kept(source, line, schema, messages)


# Files a hub repository carries beside its data.
METADATA_FILES = {"dataset_infos.json", "dataset_info.json", "configuration.json", "state.json"}


def source_files(source: Path) -> list[Path]:
    """The data files of a source: the file itself, or the .jsonl/.json files of a folder (hidden paths and hub
    metadata files skipped), sorted. A missing or unreadable source raises ``OSError`` naming it."""
    if source.is_dir():
        try:
            files = sorted(
                p
                for p in source.rglob("*")
                if p.suffix in (".jsonl", ".json")
                and p.name not in METADATA_FILES
                and not any(part.startswith(".") for part in p.relative_to(source).parts)
                and p.is_file()
            )
        except OSError as exc:
            raise OSError(f"cannot read dataset folder {source}: {exc.strerror or exc}") from exc
        if not files:
            raise FileNotFoundError(f"dataset folder {source} holds no .jsonl or .json file")
        return files
    if not source.is_file():
        raise FileNotFoundError(f"dataset source {source} does not exist")
    return [source]
