"""Every agentplex error, its stable wire code and its CLI exit code, in one place.

The daemon raises these; the control loop turns them into ``Error`` replies with
``code``; the client turns the reply back into the same class; the CLI exits with
``exit_code``.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_NOINPUT = 66  # EX_NOINPUT: the input (a transcript) does not exist
EXIT_SOFTWARE = 70
EXIT_IOERR = 74
EXIT_UNAVAILABLE = 69
EXIT_TEMPFAIL = 75
EXIT_NOPERM = 77
EXIT_PROTOCOL = 76  # EX_PROTOCOL: the remote side spoke something unreadable
EXIT_CONFIG = 78


class AgentplexError(Exception):
    """Base of all agentplex errors."""

    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = EXIT_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AgentplexError):
    """A control frame could not be decoded or a field has the wrong type."""

    code = "bad_request"
    exit_code = EXIT_USAGE


class UnknownRequestType(AgentplexError):
    """A control frame names a request type this daemon does not know."""

    code = "unknown_type"
    exit_code = EXIT_USAGE


class UnsupportedVersion(AgentplexError):
    """A request speaks a protocol version this daemon does not."""

    code = "unsupported_version"
    exit_code = EXIT_USAGE


class FrameTooLarge(AgentplexError):
    """A control frame is over MAX_FRAME_BYTES (the client refuses it before sending)."""

    code = "frame_too_large"
    exit_code = EXIT_USAGE


class Forbidden(AgentplexError):
    """The caller's role does not allow the request it sent."""

    code = "forbidden"
    exit_code = EXIT_NOPERM


class UnknownBackend(AgentplexError):
    """No backend plugin is registered under the requested id."""

    code = "unknown_backend"
    exit_code = EXIT_USAGE


class UnknownPersona(AgentplexError):
    """No persona template has the requested name."""

    code = "unknown_persona"
    exit_code = EXIT_USAGE


class BackendUnavailable(AgentplexError):
    """The backend's CLI was not found where the daemon looked."""

    code = "backend_unavailable"
    exit_code = EXIT_UNAVAILABLE


class UnknownSession(AgentplexError):
    """No session matches the given id or prefix."""

    code = "unknown_session"
    exit_code = EXIT_NOT_FOUND


class AmbiguousSession(AgentplexError):
    """A session id prefix matches more than one session."""

    code = "ambiguous_session"
    exit_code = EXIT_USAGE


class NoActiveSession(AgentplexError):
    """A request named no session and there is no active one."""

    code = "no_active_session"
    exit_code = EXIT_NOT_FOUND


class SessionEnded(AgentplexError):
    """The session has ended and takes no more messages."""

    code = "session_ended"
    exit_code = EXIT_CONFLICT


class AgentNotReading(AgentplexError):
    """The session's agent still runs but has closed its stdin: it takes no more messages."""

    code = "agent_not_reading"
    exit_code = EXIT_CONFLICT


class QueueFull(AgentplexError):
    """A send arrived while the session's message queue was full."""

    code = "queue_full"
    exit_code = EXIT_CONFLICT


class NothingToAnswer(AgentplexError):
    """A permission answer arrived for a session that is not waiting for one."""

    code = "nothing_to_answer"
    exit_code = EXIT_CONFLICT


class NothingToInterrupt(AgentplexError):
    """An interrupt arrived for a session that runs no turn (idle, or not begun)."""

    code = "nothing_to_interrupt"
    exit_code = EXIT_CONFLICT


class UnknownPanel(AgentplexError):
    """No panel has that id (or unique prefix of one)."""

    code = "unknown_panel"
    exit_code = EXIT_NOT_FOUND


class PanelFinished(AgentplexError):
    """The panel has ended (completed or archived): nothing more can be posted to it."""

    code = "panel_ended"
    exit_code = EXIT_CONFLICT


class TooManySessions(AgentplexError):
    """Starting a session would exceed the configured maximum."""

    code = "too_many_sessions"
    exit_code = EXIT_CONFLICT


class TooManyOpenFiles(AgentplexError):
    """Starting a session would bring the daemon too near its file descriptor limit."""

    code = "too_many_open_files"
    exit_code = EXIT_TEMPFAIL


class EmptyPrompt(AgentplexError):
    """A prompt or message is empty where one is required."""

    code = "empty_prompt"
    exit_code = EXIT_USAGE


class InvalidName(AgentplexError):
    """A tag or persona name is not safe and printable, or over 128 characters or 200 bytes."""

    code = "invalid_name"
    exit_code = EXIT_USAGE


class InvalidArgument(AgentplexError):
    """A request field has a value the daemon cannot use (bad env key, missing argv...)."""

    code = "invalid_argument"
    exit_code = EXIT_USAGE


class BadCwd(AgentplexError):
    """The requested working directory does not exist or is not a directory."""

    code = "bad_cwd"
    exit_code = EXIT_USAGE


class SpawnFailed(AgentplexError):
    """The session's process could not be started."""

    code = "spawn_failed"
    exit_code = EXIT_UNAVAILABLE  # EX_UNAVAILABLE: "a support program does not exist"


class TranscriptFailed(AgentplexError):
    """A session's transcript cannot be written (a full disk...): the session is stopped."""

    code = "transcript_failed"
    exit_code = EXIT_IOERR


class TranscriptGone(AgentplexError):
    """A session's transcript was deleted (``agentplex purge``, retention)."""

    code = "transcript_gone"
    exit_code = EXIT_NOINPUT


class ConfigError(AgentplexError):
    """The config file, an AGENTPLEX_* variable or a flag holds a value that cannot be used."""

    code = "bad_config"
    exit_code = EXIT_CONFIG


class RuntimeDirTooLong(ConfigError, ValueError):
    """A runtime dir whose socket paths would be over the kernel's 107-byte limit."""

    # A ValueError too: callers that validate paths catch that (the endpoint is built there).
    code = "runtime_dir_too_long"
    exit_code = EXIT_CONFIG


class MetricsUnavailable(AgentplexError):
    """The metrics port cannot be listened on (taken, or not an address of this host)."""

    code = "metrics_unavailable"
    exit_code = EXIT_UNAVAILABLE


class ServiceError(AgentplexError):
    """The unit could not be written, or systemd could not be told about it."""

    code = "service_failed"
    exit_code = EXIT_UNAVAILABLE


class DaemonNotRunning(AgentplexError):
    """No daemon listens on the runtime directory (client side only)."""

    code = "daemon_not_running"
    exit_code = EXIT_UNAVAILABLE


class DaemonAlreadyRunning(AgentplexError):
    """Another daemon holds the lock of the runtime directory or of the state directory."""

    code = "daemon_already_running"
    exit_code = EXIT_CONFLICT


class UnsafeDirectory(AgentplexError):
    """A runtime or state directory, or a socket in it, is not private to this user."""

    # Owned by another uid, writable by others, or a shared directory such as /tmp itself.

    code = "unsafe_directory"
    exit_code = EXIT_NOPERM


class RequestTimeout(AgentplexError):
    """The daemon did not answer within the request's timeout (client side only)."""

    code = "timeout"
    exit_code = EXIT_TEMPFAIL


class BadReply(AgentplexError):
    """A reply from the daemon could not be decoded (client side only)."""

    code = "bad_reply"
    exit_code = EXIT_PROTOCOL


class DaemonUnavailable(AgentplexError):
    """The web dashboard's bridge cannot reach the daemon now (stopped or restarting)."""

    code = "daemon_unavailable"
    exit_code = EXIT_UNAVAILABLE


class PortUnavailable(AgentplexError):
    """The web dashboard cannot listen on its port (in use by another program, or refused)."""

    code = "port_unavailable"
    exit_code = EXIT_UNAVAILABLE


class ExtraMissing(AgentplexError):
    """A command needs an optional extra that is not installed (pip install 'agentplex[X]')."""

    code = "extra_missing"
    exit_code = EXIT_UNAVAILABLE


class InternalError(AgentplexError):
    """The daemon failed in a way it did not expect; the daemon logs the details."""

    code = "internal"
    exit_code = EXIT_SOFTWARE


def _all_subclasses(cls: type[AgentplexError]) -> list[type[AgentplexError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


ERRORS_BY_CODE: dict[str, type[AgentplexError]] = {
    cls.code: cls for cls in _all_subclasses(AgentplexError)
}


def error_from_code(code: str, message: str) -> AgentplexError:
    """The exception for a wire error code; unknown codes become a plain AgentplexError."""
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        error = AgentplexError(f"{message} [{code}]")
        return error
    return cls(message)
