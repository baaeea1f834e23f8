"""What requests may carry: names, working directories, environments, prompts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentplex.protocol import errors as e
from agentplex.supervisor.validation import (
    MAX_NAME,
    build_environment,
    require_text,
    resolve_cwd,
    validate_env,
    validate_name,
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * (MAX_NAME + 1), "longer than 128"),
        ("é" * 101, "202 bytes of UTF-8, more than 200"),
        ("🦀" * 64, "256 bytes of UTF-8"),
        ("bad\udc80surrogate", "not valid Unicode"),
        ("tab\there", "unprintable"),
        ("new\nline", "unprintable"),
        ("nul\x00", "unprintable"),
        ("bell\x07", "unprintable"),
        ("a/b", "path separator"),
        ("/abs", "path separator"),
        ("a\\b", "path separator"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        ("../x", "path separator"),
        (".hidden", "starts with '.'"),
        (".", "starts with '.'"),
    ],
)
def test_an_unsafe_name_is_refused_saying_why(name: str, problem: str) -> None:
    with pytest.raises(e.InvalidName) as raised:
        validate_name("tag", name)
    assert problem in raised.value.message
    assert raised.value.message.startswith("invalid tag ")
    assert raised.value.exit_code == e.EXIT_USAGE


@pytest.mark.parametrize(
    "name",
    ["build", "x" * MAX_NAME, "é" * 100, "v1.2", "QA", "with space", "ünïcødé", "🧪", "a.b-c_d"],
)
def test_a_safe_name_is_returned_unchanged(name: str) -> None:
    assert validate_name("persona", name) == name


def test_no_name_is_allowed() -> None:
    assert validate_name("tag", None) is None


def test_a_refused_name_is_quoted_at_most_40_characters_long() -> None:
    with pytest.raises(e.InvalidName) as raised:
        validate_name("tag", "y" * 500)
    assert "y" * 41 not in raised.value.message


def test_the_cwd_defaults_to_the_daemons_own() -> None:
    assert resolve_cwd(None) == Path.cwd()
    assert resolve_cwd("") == Path.cwd()


def test_an_existing_absolute_directory_is_the_cwd(tmp_path: Path) -> None:
    assert resolve_cwd(str(tmp_path)) == tmp_path


def test_a_symlink_to_a_directory_is_accepted_as_given(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert resolve_cwd(str(tmp_path / "link")) == tmp_path / "link"


@pytest.mark.parametrize("relative", ["relative", "./here", "..", "a/b"])
def test_a_relative_cwd_is_refused_even_if_it_exists(relative: str) -> None:
    with pytest.raises(e.BadCwd) as raised:
        resolve_cwd(relative)
    assert "not an absolute path" in raised.value.message


def test_a_file_is_not_a_cwd(tmp_path: Path) -> None:
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(e.BadCwd) as raised:
        resolve_cwd(str(file))
    assert "not a directory" in raised.value.message


def test_a_missing_directory_is_not_a_cwd(tmp_path: Path) -> None:
    with pytest.raises(e.BadCwd):
        resolve_cwd(str(tmp_path / "gone"))


def test_a_dangling_symlink_is_not_a_cwd(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(e.BadCwd):
        resolve_cwd(str(tmp_path / "dangling"))


@pytest.mark.parametrize(
    "env",
    [{"A=B": "x"}, {"=": "x"}, {"": "x"}, {"NUL\x00": "x"}, {"OK": "nul\x00inside"}],
    ids=["equals-in-key", "only-equals", "empty-key", "nul-in-key", "nul-in-value"],
)
def test_an_environment_a_process_cannot_have_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(e.InvalidArgument) as raised:
        validate_env(env)
    assert "invalid environment variable" in raised.value.message


def test_a_valid_environment_comes_back_as_a_copy() -> None:
    given = {"FOO": "bar", "EMPTY": "", "WITH_EQUALS": "a=b", "lower": "ok"}
    env = validate_env(given)
    assert env == given
    env["NEW"] = "x"
    assert "NEW" not in given


@pytest.mark.parametrize("text", [None, "", " ", "\n\t  \r\n"])
def test_a_missing_or_blank_prompt_is_refused(text: str | None) -> None:
    with pytest.raises(e.EmptyPrompt) as raised:
        require_text("prompt", text)
    assert raised.value.message == "the prompt is empty"


def test_a_prompt_with_surrounding_space_is_kept_as_is() -> None:
    assert require_text("message", "  hi there \n") == "  hi there \n"


def test_the_session_environment_layers_allowlist_backend_overrides_then_marker() -> None:
    env = build_environment(
        allowlist=("PATH", "HOME", "ABSENT"),
        daemon_env={"PATH": "/bin", "HOME": "/home/me", "SECRET": "leak"},
        backend_env={"HOME": "/scratch", "TOOL": "1"},
        overrides={"TOOL": "2", "AGENTPLEX_SESSION_ID": "forged"},
        marker=("AGENTPLEX_SESSION_ID", "the-real-id"),
    )
    assert env == {
        "PATH": "/bin",
        "HOME": "/scratch",
        "TOOL": "2",
        "AGENTPLEX_SESSION_ID": "the-real-id",
    }


def test_the_daemons_environment_outside_the_allowlist_never_reaches_a_session() -> None:
    env = build_environment((), dict(os.environ), {}, {}, ("M", "1"))
    assert env == {"M": "1"}
