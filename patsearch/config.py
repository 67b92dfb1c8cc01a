"""Shared plumbing for the YAML-backed configs (architectures, recipes, search spaces): safe parsing and
dataclass construction whose failures are one-line :class:`~patsearch.errors.UserError` messages."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from patsearch.errors import UserError

T = TypeVar("T")


def parse_yaml(text: str, error: type[UserError], source: str) -> Any:
    """``yaml.safe_load`` of ``text``; invalid YAML raises ``error`` naming ``source``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None


def read_yaml(path: str | os.PathLike, error: type[UserError], what: str) -> Any:
    """Read and parse a YAML file; an unreadable file raises ``error`` ("cannot read <what> <path>: ...")."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    return parse_yaml(text, error, str(path))


def dataclass_from_mapping(cls: type[T], data: Any, *, error: type[UserError], source: str, what: str) -> T:
    """``cls(**data)`` for a dataclass whose ``__post_init__`` validates, with unknown fields and validation
    failures reported as ``error`` prefixed by ``source``."""
    if not isinstance(data, Mapping):
        raise error(f"{source}: expected a mapping of {what} fields, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except (error, TypeError) as exc:
        raise error(f"{source}: {exc}") from None
