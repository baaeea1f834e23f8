"""Personas: named roles (instructions, default backend and model, tools, permission policy)
read from TOML templates, built-in ones first, the user's overriding them by name.

The templates are read when the daemon starts and again on SIGHUP or a ``reload_personas``
request: a new set replaces the old at once (sessions keep the persona they started with).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

from agentplex.plugins.api import PermissionPolicy
from agentplex.protocol import PersonaInfo
from agentplex.protocol.errors import UnknownPersona

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "plugins" / "personas"

log = structlog.get_logger(__name__)


class Persona(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One persona template, as written in its TOML file."""

    name: str
    icon: str = ""
    description: str = ""
    instructions: str = ""
    backend: str | None = None
    model: str | None = None
    allowed_tools: list[str] = []
    permission_policy: PermissionPolicy = PermissionPolicy.ASK


@dataclass(frozen=True)
class TemplateProblem:
    """A template file that could not be used, and why."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def user_persona_dir() -> Path:
    """``$XDG_CONFIG_HOME/agentplex/personas`` (default ``~/.config/agentplex/personas``)."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "agentplex" / "personas"


Found = dict[str, tuple[Persona, Path]]
"""Personas by lower-case name, each with the file it came from."""


class TemplateLoader:
    """Reads persona templates from directories; a later directory overrides an earlier one."""

    def __init__(self, directories: list[Path]) -> None:
        self.directories = directories

    def load(self) -> tuple[Found, list[TemplateProblem]]:
        """Every readable template by lower-case name, and the problems of the others.

        Within one directory two files naming the same persona (case-insensitively) are a
        problem, reported with both paths: the last file in name order is used, as a
        later directory's file is used over an earlier one's (without a problem: that is
        how a user's template overrides a built-in one)."""
        found: Found = {}
        problems: list[TemplateProblem] = []
        for directory in self.directories:
            here: dict[str, Path] = {}
            for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
                try:
                    persona = _read(path)
                except TemplateError as exc:
                    problems.append(TemplateProblem(path, str(exc)))
                    continue
                key = persona.name.lower()
                if key in here:
                    problems.append(_duplicate(persona.name, here[key], path))
                here[key] = path
                found[key] = (persona, path)
        return found, problems


def _duplicate(name: str, earlier: Path, used: Path) -> TemplateProblem:
    return TemplateProblem(
        used,
        f"persona {name!r} is also defined in {earlier}; this file is used "
        "(the last in name order wins)",
    )


class TemplateError(ValueError):
    """A persona template that is not valid TOML or does not fit the schema."""


def _read(path: Path) -> Persona:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return msgspec.convert(data, Persona)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(str(exc)) from exc
    except msgspec.ValidationError as exc:
        raise TemplateError(str(exc)) from exc


class PersonaRegistry:
    """Holds personas by name (case-insensitive), modelled on BackendRegistry.

    With ``backends`` (the registered backend ids), a persona naming another backend is
    listed with a problem, rather than failing only when a session is started with it.
    """

    def __init__(self, loader: TemplateLoader, backends: Iterable[str] | None = None) -> None:
        self._loader = loader
        self._backends = None if backends is None else frozenset(backends)
        self._personas: Found = {}
        self._flaws: dict[str, str] = {}
        self.problems: list[TemplateProblem] = []
        self.reload()

    @classmethod
    def with_defaults(cls, backends: Iterable[str] | None = None) -> PersonaRegistry:
        """Built-in personas, overridden by the user's templates of the same name."""
        return cls(TemplateLoader([BUILTIN_DIR, user_persona_dir()]), backends)

    def reload(self) -> list[str]:
        """Read the templates again and use them from now on; returns what changed.

        Reading a few small files takes well under a millisecond: done on the event loop,
        so no request ever sees half a reload."""
        before = self._personas
        found, problems = self._loader.load()
        self._flaws = self._backend_flaws(found)
        self._personas = found
        self.problems = problems + [
            TemplateProblem(found[key][1], flaw) for key, flaw in self._flaws.items()
        ]
        for problem in self.problems:
            log.warning("persona_template_problem", path=str(problem.path), problem=problem.problem)
        return changes(before, found)

    def _backend_flaws(self, found: Found) -> dict[str, str]:
        if self._backends is None:
            return {}
        known = ", ".join(sorted(self._backends))
        return {
            key: f"persona {persona.name!r} names backend {persona.backend!r}, which is not "
            f"registered (known: {known}); starting it fails"
            for key, (persona, _) in found.items()
            if persona.backend is not None and persona.backend not in self._backends
        }

    def get(self, name: str) -> Persona:
        """The persona called ``name``."""
        try:
            return self._personas[name.lower()][0]
        except KeyError:
            known = ", ".join(p.name for p in self)
            raise UnknownPersona(f"unknown persona {name!r} (known: {known})") from None

    def __iter__(self) -> Iterator[Persona]:
        return (persona for persona, _ in self._personas.values())

    def describe(self) -> list[PersonaInfo]:
        """What ``agentplex personas`` shows."""
        return [
            PersonaInfo(
                name=persona.name,
                icon=persona.icon,
                description=persona.description,
                backend=persona.backend,
                model=persona.model,
                allowed_tools=persona.allowed_tools,
                permission_policy=persona.permission_policy,
                source=str(path),
                problem=self._flaws.get(key),
            )
            for key, (persona, path) in self._personas.items()
        ]


def changes(before: Found, after: Found) -> list[str]:
    """What a reload changed, one line per persona: added, changed (its template or its
    file), removed."""
    lines = []
    for key, (persona, path) in after.items():
        if key not in before:
            lines.append(f"added {persona.name} ({path})")
        elif before[key] != (persona, path):
            lines.append(f"changed {persona.name} ({path})")
    lines += [f"removed {persona.name}" for key, (persona, _) in before.items() if key not in after]
    return lines
