"""Shared plumbing for the YAML-backed configs (architectures, recipes, search spaces): safe parsing and
dataclass construction whose failures are one-line :class:`~patsearch.errors.UserError` messages."""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from patsearch.errors import UserError

logger = logging.getLogger(__name__)
T = TypeVar("T")
OptionsT = TypeVar("OptionsT", bound="OptionsMixin")


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


def check_fields(cls: type, data: Any, *, error: type[UserError], source: str, what: str) -> None:
    """A one-line ``error`` unless ``data`` is a mapping of ``cls``'s dataclass fields."""
    if not isinstance(data, Mapping):
        raise error(f"{source}: expected a mapping of {what} fields, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")


def dataclass_from_mapping(cls: type[T], data: Any, *, error: type[UserError], source: str, what: str) -> T:
    """``cls(**data)`` for a dataclass whose ``__post_init__`` validates, with unknown fields and validation
    failures reported as ``error`` prefixed by ``source``."""
    check_fields(cls, data, error=error, source=source, what=what)
    try:
        return cls(**data)
    except (error, TypeError) as exc:
        raise error(f"{source}: {exc}") from None


def take_alias(data: Mapping[str, Any], alias: str, name: str, *, spelling: str, error: type[UserError]) -> dict:
    """``data`` with the value of a deprecated flag (key ``alias``, written ``spelling`` on the command line) under
    its field ``name``; giving both is an error, the old spelling alone a warning that names the new one."""
    out = dict(data)
    value = out.pop(alias, None)
    if value is None:
        return out
    new = "--" + name.replace("_", "-")
    if out.get(name) is not None:
        raise error(f"{spelling} is the old spelling of {new}; give {new} only")
    logger.warning("%s is deprecated: it is spelled %s now", spelling, new)
    out[name] = value
    return out


def plain(value: Any) -> Any:
    """``value`` as YAML-safe data: a config (anything with ``to_dict``, e.g. ArchConfig) as its mapping, a mapping
    as a dict, a tuple as a list (``safe_dump`` writes no tuples)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    return value


class OptionsMixin:
    """``replace``, ``from_dict``, ``from_yaml`` and ``from_flags`` of an options dataclass validated in
    ``__post_init__`` (every command's: ``TrainOptions``, ``ProfileOptions``, ``BenchOptions``, ``SearchOptions``,
    ``ProxyCheckOptions``): each sets ``options_error`` (its one-line error class) and ``options_what`` (how
    messages name it, e.g. "train options"), and maps its command's flag names onto its fields in
    :meth:`fields_from` where they differ."""

    options_error: type[UserError]
    options_what: str

    def need(self, ok: bool, name: str, what: str) -> None:
        """A one-line error naming the flag of field ``name`` and its value unless ``ok``."""
        if not ok:
            raise self.options_error(f"--{name.replace('_', '-')} must be {what}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (what :meth:`from_dict` takes back)."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self: OptionsT, **changes: Any) -> OptionsT:
        try:
            return dataclasses.replace(self, **changes)  # type: ignore[type-var]
        except TypeError as exc:
            raise self.options_error(str(exc)) from None

    @classmethod
    def fields_from(cls, data: Mapping[str, Any], source: str) -> dict[str, Any]:
        """``data`` (fields, or flags named as the command names them) as field names; dashes read as
        underscores."""
        return {key.replace("-", "_") if isinstance(key, str) else key: value for key, value in data.items()}

    @classmethod
    def from_dict(cls: type[OptionsT], data: Any, *, source: str | None = None) -> OptionsT:
        source = source or cls.options_what
        if isinstance(data, Mapping):
            data = cls.fields_from(data, source)
        return dataclass_from_mapping(cls, data, error=cls.options_error, source=source, what=cls.options_what)

    @classmethod
    def from_flags(cls: type[OptionsT], flags: Mapping[str, Any], *, file: str | os.PathLike | None = None,
                   given: Collection[str] = ()) -> OptionsT:
        """A command's options from its flags (name -> value). With an options ``file`` its fields are the base
        and only the ``given`` flags (those on the command line) override them; defaults do not."""
        if file is None:
            return cls(**cls.fields_from(flags, ""))
        return cls.from_yaml(file, **{name: value for name, value in flags.items() if name in given})

    @classmethod
    def from_yaml(cls: type[OptionsT], path: str | os.PathLike, **overrides: Any) -> OptionsT:
        """Options from a YAML file (``safe_load``); ``overrides`` (e.g. the CLI's explicit flags) win."""
        data = read_yaml(path, cls.options_error, f"{cls.options_what} file")
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise cls.options_error(f"{path}: expected a mapping of {cls.options_what}, got {type(data).__name__}")
        return cls.from_dict({**data, **overrides}, source=os.fspath(path))
