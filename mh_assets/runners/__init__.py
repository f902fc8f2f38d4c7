"""Child processes started through Dagster Pipes: each heavy step's ``main`` runs inside ``child_pipes``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ERROR_KEY = "mh_error"


@contextmanager
def child_pipes() -> Iterator[Any]:
    """``open_dagster_pipes`` that also sends the failure's message to the step, so the step fails saying why
    (the traceback stays in the step's log)."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        try:
            yield pipes
        except Exception as exc:
            pipes.report_custom_message({ERROR_KEY: f"{type(exc).__name__}: {exc}"[:2000]})
            raise
