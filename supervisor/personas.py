"""Personas: named roles (instructions, default backend and model, tools, permission policy)
read from TOML templates, built-in ones first, the user's overriding them by name."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
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


class TemplateLoader:
    """Reads persona templates from directories; a later directory overrides an earlier one."""

    def __init__(self, directories: list[Path]) -> None:
        self.directories = directories

    def load(self) -> tuple[dict[str, tuple[Persona, Path]], list[TemplateProblem]]:
        """Every readable template by lower-case name, and the problems of the others."""
        found: dict[str, tuple[Persona, Path]] = {}
        problems: list[TemplateProblem] = []
        for directory in self.directories:
            for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
                try:
                    persona = _read(path)
                except TemplateError as exc:
                    problems.append(TemplateProblem(path, str(exc)))
                    continue
                found[persona.name.lower()] = (persona, path)
        return found, problems


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
    """Holds personas by name (case-insensitive), modelled on BackendRegistry."""

    def __init__(self, loader: TemplateLoader) -> None:
        self._personas, self.problems = loader.load()
        for problem in self.problems:
            log.warning("persona_template_skipped", path=str(problem.path), problem=problem.problem)

    @classmethod
    def with_defaults(cls) -> PersonaRegistry:
        """Built-in personas, overridden by the user's templates of the same name."""
        return cls(TemplateLoader([BUILTIN_DIR, user_persona_dir()]))

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
            )
            for persona, path in self._personas.values()
        ]
