"""Small helpers every asset module shares: running a runner, reading upstream artifacts."""

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from mh_assets.store import MissingUpstream, require_latest


def runner(name: str) -> list[str]:
    return [sys.executable, "-m", f"mh_assets.runners.{name}"]


def child_metadata(invocation: Any) -> dict[str, Any]:
    results = invocation.get_results()
    return dict(results[-1].metadata or {}) if results else {}


def upstream(key: str, hint: str = "") -> Path:
    try:
        return require_latest(key, hint)
    except MissingUpstream as exc:
        raise dg.Failure(description=str(exc)) from exc


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
