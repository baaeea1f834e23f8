"""The config file: one TOML file, AGENTPLEX_* variables over it, flags over those.

``$XDG_CONFIG_HOME/agentplex/config.toml`` (or ``--config``, or ``$AGENTPLEX_CONFIG``) is
decoded into Structs that forbid unknown keys. Every setting is one :class:`Key`: where it
sits in the file, the :class:`Config` field it fills, the variable and flag that override it.
:func:`load` returns the Config and, for each key, the value and where it came from.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from agentplex.protocol.errors import ConfigError
from agentplex.supervisor.config import Config
from agentplex.supervisor.config_schema import (
    BACKEND_VARIABLE,
    KEYS,
    LIST_FIELDS,
    PATH_FIELDS,
    BackendSection,
    FileConfig,
    Key,
)
from agentplex.supervisor.credentials import read_env_file

CONFIG_VARIABLE = "AGENTPLEX_CONFIG"
Source = Literal["default", "file", "env", "flag"]
_S = TypeVar("_S", bound=msgspec.Struct)


@dataclass(frozen=True)
class Setting:
    """One effective value and where it came from."""

    key: str
    value: Any
    source: Source
    origin: str
    """The file's path, the variable's name or the flag; empty for a default."""
    env: str
    """The variable that would override it."""


@dataclass(frozen=True)
class Resolved:
    """The effective configuration."""

    config: Config
    settings: list[Setting]
    file: Path | None
    """The file that was read, if one was."""


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/agentplex/config.toml`` (default ``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agentplex" / "config.toml"


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Resolved:
    """Defaults < file < environment < flags. ``flags`` are by Config field; None is unset.

    ``path`` (else ``$AGENTPLEX_CONFIG``) must exist; the default path may be missing.
    """
    environ = os.environ if environ is None else environ
    file = _config_path(path, environ)
    parsed = read_file(file) if file is not None else FileConfig()
    values: dict[str, Any] = {}
    settings: list[Setting] = []
    for key in KEYS:
        setting = _resolve(key, parsed, file, environ, (flags or {}).get(key.field))
        if setting.source != "default":
            values[key.field] = _to_config(key, setting.value)
        settings.append(setting)
    backends = _backend_settings(parsed, file, environ)
    settings.extend(backends)
    values["backend_flags"] = {
        s.key.split(".")[1]: tuple(s.value) for s in backends if s.key.endswith(".flags")
    }
    values["backend_env"] = {
        s.key.split(".")[1]: s.value for s in backends if s.key.endswith(".env")
    }
    config = _build(values)
    if config.env_file:  # a broken env file stops the daemon at start, not a session later
        read_env_file(Path(config.env_file))
    return Resolved(config, _by_table(settings), file)


def _by_table(settings: list[Setting]) -> list[Setting]:
    """The settings with each table's keys together (``[daemon]`` keys come from two
    places), tables in the order they first appear, so they print as valid TOML."""
    order: dict[str, int] = {}
    for setting in settings:
        order.setdefault(setting.key.rpartition(".")[0], len(order))
    return sorted(settings, key=lambda s: order[s.key.rpartition(".")[0]])


def export_to_environment(
    resolved: Resolved, environ: MutableMapping[str, str] | None = None
) -> None:
    """Put the file's dirs and backend CLIs in the environment (where no variable set
    them), so every client command and the backends' ``locate`` find the same places."""
    environ = os.environ if environ is None else environ
    for setting in resolved.settings:
        exported = setting.key.startswith("dirs.") or setting.key.endswith(".cli")
        if setting.source == "file" and exported:
            environ[setting.env] = setting.value


def _config_path(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    explicit = path or environ.get(CONFIG_VARIABLE)
    if explicit:
        file = Path(explicit).expanduser()
        if not file.is_file():
            raise ConfigError(f"{file}: no such config file")
        return file
    file = default_path()
    return file if file.is_file() else None


def read_file(file: Path) -> FileConfig:
    """Decode ``file``; an error names the file, the key and what was expected."""
    try:
        raw = tomllib.loads(file.read_text())
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    return _decode(file, raw, FileConfig, "")


def _decode(file: Path, raw: Any, struct: type[_S], prefix: str) -> _S:
    try:
        return msgspec.convert(raw, struct)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{file}: {_explain(str(exc), raw, struct, prefix)}") from exc


# ---------------------------------------------------------------------- resolving


def _resolve(
    key: Key, parsed: FileConfig, file: Path | None, environ: Mapping[str, str], flag: Any
) -> Setting:
    if flag is not None:
        origin = key.flag or key.field
        return Setting(key.name, _checked(key, flag, origin), "flag", origin, key.env)
    if environ.get(key.env):
        value = _from_env(key, environ[key.env])
        return Setting(key.name, value, "env", key.env, key.env)
    section, leaf = key.name.split(".")
    value = getattr(getattr(parsed, section), leaf)
    if value is not None and file is not None:
        if key.field in PATH_FIELDS:
            value = _file_path(file, value)
        return Setting(key.name, value, "file", str(file), key.env)
    return Setting(key.name, _default(key.field), "default", "", key.env)


def _file_path(file: Path, value: str) -> str:
    """A path in the file: ``~`` expanded, relative to the file's directory."""
    return str((file.parent / Path(value).expanduser()).absolute())


def _from_env(key: Key, text: str) -> Any:
    if key.field in LIST_FIELDS:
        return [item.strip() for item in text.split(",") if item.strip()]
    if key.field in PATH_FIELDS:
        return str(Path(text).expanduser().absolute())
    return _checked(key, text, f"{key.env}={text!r}", strict=False)


def _checked(key: Key, value: Any, origin: str, *, strict: bool = True) -> Any:
    """``value`` converted to the key's type and limits, or a ConfigError naming ``origin``."""
    section, leaf = key.name.split(".")
    section_type = msgspec.structs.fields(FileConfig)[_field_index(FileConfig, section)].type
    tp = msgspec.structs.fields(section_type)[_field_index(section_type, leaf)].type
    try:
        return msgspec.convert(value, tp, strict=strict)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{origin}: {key.name}: {_reason(str(exc), value, tp)}") from exc


def _field_index(struct: Any, name: str) -> int:
    return [f.name for f in msgspec.structs.fields(struct)].index(name)


def _default(field: str) -> Any:
    value = getattr(Config(), field)
    return list(value) if isinstance(value, tuple) else value


def _to_config(key: Key, value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _backend_settings(
    parsed: FileConfig, file: Path | None, environ: Mapping[str, str]
) -> list[Setting]:
    """``backends.<id>.cli``, ``.flags`` and ``.env``: from the file, the first two
    overridden by the variables. A table or variable for a backend that is not installed is
    refused (a typo would otherwise be ignored) or, for a variable, left alone."""
    found: dict[tuple[str, str], Setting] = {}
    known = _known_backends() if parsed.backends or _any_backend_variable(environ) else set()
    for backend, raw in sorted(parsed.backends.items()):
        assert file is not None
        if backend not in known:
            raise ConfigError(
                f"{file}: [backends.{backend}]: unknown backend {backend!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        section = _decode(file, raw, BackendSection, f"backends.{backend}")
        cli = section.cli and _cli_path(file, section.cli)
        values = {"cli": cli, "flags": section.flags, "env": section.env}
        for what, value in values.items():
            if value is not None:
                env = f"AGENTPLEX_{backend.upper()}_{what.upper()}" if what != "env" else ""
                name = f"backends.{backend}.{what}"
                found[backend, what] = Setting(name, value, "file", str(file), env)
    for name, text in environ.items():
        match = BACKEND_VARIABLE.match(name)
        if match is None or not text:
            continue
        backend = _backend_id(match["id"], parsed)
        if backend not in known:
            continue
        what = match["what"].lower()
        from_env: Any = shlex.split(text) if what == "flags" else text
        found[backend, what] = Setting(f"backends.{backend}.{what}", from_env, "env", name, name)
    return [found[k] for k in sorted(found)]


def _cli_path(file: Path, value: str) -> str:
    """A backend's CLI in the file: a bare name is looked up on PATH when the CLI is run
    (``cli = "claude"``); a path is taken relative to the file's directory."""
    if "/" not in value and not value.startswith("~"):
        return value
    return _file_path(file, value)


def _any_backend_variable(environ: Mapping[str, str]) -> bool:
    return any(BACKEND_VARIABLE.match(name) for name in environ)


def _known_backends() -> set[str]:
    """The ids of the backends the daemon would have: built-in and installed plugins."""
    from agentplex.supervisor.backends import BackendRegistry

    return {backend.id for backend in BackendRegistry.with_defaults()}


def _backend_id(variable_id: str, parsed: FileConfig) -> str:
    """The file's spelling of a backend named in a variable (``CLAUDE`` -> ``claude``)."""
    for backend in parsed.backends:
        if backend.upper() == variable_id:
            return backend
    return variable_id.lower()


def _build(values: dict[str, Any]) -> Config:
    try:
        return msgspec.convert(values, Config)
    except msgspec.ValidationError as exc:  # every value was checked on the way in
        raise ConfigError(f"invalid configuration: {exc}") from exc


# ---------------------------------------------------------------------- errors

_LOCATION = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")


def _explain(message: str, raw: Any, struct: Any, prefix: str) -> str:
    """``limits.max_sessions: expected int, got str "ten"`` from a msgspec message."""
    match = _LOCATION.match(message)
    assert match is not None
    what, path = match["what"], (match["path"] or "").lstrip(".")
    unknown = _UNKNOWN.match(what)
    if unknown:
        key = ".".join(filter(None, (prefix, path, unknown["name"])))
        known = ", ".join(f.name for f in msgspec.structs.fields(_struct_at(struct, path)))
        return f"{key}: unknown key (expected one of: {known})"
    key = ".".join(filter(None, (prefix, path))) or "(top level)"
    return f"{key}: {_reason(what, _value_at(raw, path), _type_at(struct, path))}"


def _reason(what: str, value: Any, tp: Any) -> str:
    """``expected int, got str "ten"``: what msgspec expected, what it found."""
    choices = getattr(_strip_optional(tp), "__args__", None)
    if what.startswith("Invalid enum value") and choices:
        expected = "one of " + ", ".join(f'"{c}"' for c in choices)
    else:
        found = re.match(r"Expected `(?P<type>[^`]*)`(?P<rest>[^,]*)", what)
        if found is None:
            return what
        expected = found["type"].replace(" | null", "") + found["rest"]
    return f"expected {expected}, got {_describe(value)}"


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'str "{value}"'
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _struct_at(struct: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        struct = _strip_optional(_field_type(struct, part))
    return struct


def _type_at(struct: Any, path: str) -> Any:
    parts = [p for p in path.split(".") if p]
    for part in parts[:-1]:
        struct = _field_type(struct, part)
    return _field_type(struct, re.sub(r"\[.*", "", parts[-1])) if parts else struct


def _field_type(struct: Any, name: str) -> Any:
    try:
        return msgspec.structs.fields(struct)[_field_index(struct, name)].type
    except (TypeError, ValueError):
        return Any


def _strip_optional(tp: Any) -> Any:
    args = [a for a in getattr(tp, "__args__", ()) if a is not type(None)]
    if type(None) in getattr(tp, "__args__", ()) and len(args) == 1:
        tp = args[0]
    return getattr(tp, "__origin__", None) if _is_annotated(tp) else tp


def _is_annotated(tp: Any) -> bool:
    return hasattr(tp, "__metadata__")


def _value_at(raw: Any, path: str) -> Any:
    for part in filter(None, re.split(r"\.|\[(\d+)\]", path)):
        if isinstance(raw, dict):
            raw = raw.get(part)
        elif isinstance(raw, list) and part.isdigit() and int(part) < len(raw):
            raw = raw[int(part)]
        else:
            return None
    return raw
