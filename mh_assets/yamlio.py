"""YAML files whose errors name the file, the line and the field.

``load_yaml`` returns plain data in which every mapping also carries its first line under ``LINE``; ``where``
turns a mapping (and optionally one of its keys) into ``file:line``; ``parse_as`` checks such data against a
pydantic model and reports its first error the same way. Plain module (PyYAML, pydantic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

M = TypeVar("M")

LINE = "__line__"


class YamlError(ValueError):
    """A YAML file that cannot be used, named with its file, line and field."""


def load_yaml(path: Path) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Loader, node: yaml.MappingNode) -> dict[str, Any]:
        data = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
        lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        return {**data, LINE: node.start_mark.line + 1, f"{LINE}keys": lines}

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise YamlError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc


def where(path: Path, node: dict[str, Any], key: str | None = None) -> str:
    """``file:line`` of a mapping, or of one of its keys when that key is present."""
    line = (node.get(f"{LINE}keys") or {}).get(key, node.get(LINE)) if key else node.get(LINE)
    return f"{path}:{line}" if line else str(path)


def fields(node: dict[str, Any]) -> dict[str, Any]:
    """The mapping without its line bookkeeping."""
    return {k: v for k, v in node.items() if not k.startswith(LINE)}


def plain(node: Any) -> Any:
    """``load_yaml`` data without the line bookkeeping, at every depth."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in fields(node).items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


def parse_as(model: type[M], node: Any, path: Path, prefix: str = "") -> M:
    """``model`` built from ``load_yaml`` data; the first error raises ``YamlError`` as ``file:line: field: why``."""
    from pydantic import ValidationError

    try:
        return model.model_validate(plain(node))  # type: ignore[attr-defined]
    except ValidationError as exc:
        err = exc.errors()[0]
        line = node.get(LINE) if isinstance(node, dict) else None
        for part in err["loc"]:
            if not (isinstance(node, dict) and str(part) in node):
                break
            line = (node.get(f"{LINE}keys") or {}).get(str(part), line)
            node = node[str(part)]
        field = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        at = f"{path}:{line}" if line else str(path)
        raise YamlError(f"{at}: {field}: {err['msg']}") from None
