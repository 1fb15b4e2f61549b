"""YAML documents validated by frozen pydantic models, with errors that point at the line.

Bundle sections and policy case files are YAML. They are read with a safe loader that also
refuses duplicate keys (PyYAML would silently keep the last one), and every error names the
source, the line and the field, for example
``gates.yaml line 4: runs.train[0].gate: unknown gate 'fairnes'; known gates: ...``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

_MAX_REPORTED = 3

DocumentT = TypeVar("DocumentT", bound=BaseModel)


class Document(BaseModel):
    """A part of a YAML document: immutable, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def parse_document(source: str, text: str, model: type[DocumentT]) -> DocumentT:
    """Parse YAML ``text`` and validate it as ``model``.

    Raises:
        ValueError: invalid YAML or an invalid document; the message starts with ``source``
            and names the line and the field.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        where = f" line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ValueError(f"{source}{where}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    if node is None:
        raise ValueError(f"{source}: the document is empty")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{source} {describe_errors(exc, node)}") from None


def describe_errors(exc: ValidationError, node: yaml.Node | None = None) -> str:
    """A one-line account of a validation error: field paths, and lines when ``node`` is given."""
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:_MAX_REPORTED]:
        path = _path(error["loc"])
        where = f"line {_line(node, error['loc'])}: " if node is not None else ""
        parts.append(f"{where}{path}{': ' if path else ''}{_message(error)}")
    more = f" (and {len(errors) - _MAX_REPORTED} more)" if len(errors) > _MAX_REPORTED else ""
    return "; ".join(parts) + more


def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "missing field"
    return str(error["msg"]).removeprefix("Value error, ")


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            path += f".{part}" if path else part
    return path


def _line(node: yaml.Node, loc: Sequence[int | str]) -> int:
    """The line of the deepest YAML node ``loc`` reaches (1-based)."""
    current = node
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode):
            child = next(
                (
                    value
                    for key, value in current.value
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part)
                ),
                None,
            )
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            child = current.value[part] if 0 <= part < len(current.value) else None
        if child is None:
            break
        current = child
    return int(current.start_mark.line) + 1
