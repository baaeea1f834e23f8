"""The session commands' rough edges (issue 13): ``--json`` on every data command, readable
``events``, exit codes that agree, durations and arguments checked before anything is sent,
and the active session moving off an ended one.

Each test runs the real ``agentplex`` command against a real daemon (a fresh one per test:
several are about the active session, which every start changes).
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import CLI_TIMEOUT, DaemonProcess, fails, next_event, ok, session_info, start_daemon

from agentplex import protocol as p
from agentplex.cli.render import describe, session_table
from agentplex.client import Client
from agentplex.client.transcripts import read_records
from agentplex.protocol import errors as e

CLI = [sys.executable, "-m", "agentplex.cli.main"]
CAT = ["--", "cat"]


def listed(daemon: DaemonProcess) -> dict[str, bool]:
    """``ls --json``: each session's id, and whether it is the active one."""
    return {s["id"]: s["active"] for s in json.loads(ok(daemon, "ls", "--json"))}


def wait_idle(client: Client, session_id: str) -> None:
    """Wait until the session's turn has ended (it is idle)."""
    with client.subscribe(p.SESSION_TOPIC) as events:
        if client.inspect(session_id).status is not p.SessionStatus.IDLE:
            next_event(
                events,
                lambda ev: isinstance(ev, p.StatusChanged)
                and ev.session_id == session_id
                and ev.status is p.SessionStatus.IDLE,
                timeout=30,
            )


# ---------------------------------------------------------------------- --json everywhere


def test_send_switch_interrupt_and_logs_print_the_reply_with_json(
    daemon: DaemonProcess, client: Client
) -> None:
    sid = client.start("exec", argv=["cat"]).id
    sent = json.loads(ok(daemon, "send", "--json", sid[:8], "hello"))
    assert (sent["type"], sent["session_id"], sent["queued"]) == ("sent", sid, 0)
    switched = json.loads(ok(daemon, "switch", "--json", sid[:8]))
    assert (switched["type"], switched["session_id"]) == ("switched", sid)
    logs = json.loads(ok(daemon, "logs", "--json", sid))
    assert logs["id"] == sid and Path(logs["transcript"]).is_file()
    interrupted = json.loads(ok(daemon, "interrupt", "--json", sid))
    assert (interrupted["type"], interrupted["session_id"]) == ("interrupted", sid)
    # permit takes --json too: refused here for what the session is, not for the flag
    line = fails(daemon.cli("permit", "--allow", "--json", sid, timeout=CLI_TIMEOUT), 4)
    assert "not waiting for a permission answer" in line or "has ended" in line


def test_ls_json_says_which_session_is_active(daemon: DaemonProcess, client: Client) -> None:
    first = client.start("exec", argv=["cat"]).id
    second = client.start("exec", argv=["cat"]).id
    assert listed(daemon) == {first: False, second: True}
    client.switch(first)
    assert listed(daemon) == {first: True, second: False}


def test_events_without_json_prints_one_readable_line_per_event(
    daemon: DaemonProcess, client: Client
) -> None:
    events = subprocess.Popen(
        [*CLI, "events", "--lifecycle"], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert events.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in events.stdout or ()])
    reader.start()
    try:
        created = _created_line(client, lines)
    finally:
        events.send_signal(signal.SIGINT)
        assert events.wait(timeout=CLI_TIMEOUT) == 130
        reader.join(CLI_TIMEOUT)
        events.stdout.close()
    sid, line = created
    # time, type (the topic without the id), short session id, the gist
    assert re.fullmatch(rf"\d\d:\d\d:\d\d session\.created {sid[:8]} exec long_lived", line)
    every = [line, *lines.queue]
    assert all(re.match(r"\d\d:\d\d:\d\d session\.[a-z_]+ ", x) for x in every), every
    assert not any("{" in x or "SessionCreated" in x for x in every), every


def _created_line(client: Client, lines: queue.Queue[str]) -> tuple[str, str]:
    """Start sessions until ``events`` shows one's creation (it subscribes at its own pace);
    that session's id and line."""
    deadline = time.monotonic() + CLI_TIMEOUT
    while time.monotonic() < deadline:
        sid = client.start("exec", argv=["cat"]).id
        try:
            while True:
                line = lines.get(timeout=2).rstrip("\n")
                if "session.created" in line and sid[:8] in line:
                    return sid, line
        except queue.Empty:
            continue
    raise AssertionError("events printed no session.created line")


# ---------------------------------------------------------------------- exit codes


def test_interrupting_an_idle_or_ended_session_exits_4_like_send_and_permit(
    daemon: DaemonProcess, client: Client
) -> None:
    sid = client.start("demo", "hello").id
    wait_idle(client, sid)
    line = fails(daemon.cli("interrupt", sid, timeout=CLI_TIMEOUT), e.EXIT_CONFLICT)
    assert "no turn is running" in line
    with pytest.raises(e.NothingToInterrupt):
        client.interrupt(sid)
    client.terminate(sid)
    line = fails(daemon.cli("interrupt", sid, timeout=CLI_TIMEOUT), e.EXIT_CONFLICT)
    assert "has ended" in line


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "nan", "ls"],
        ["--timeout", "0", "ls"],
        ["--timeout", "-3", "ls"],
        ["--timeout", "inf", "ls"],
        ["kill", "--grace", "nan"],
        ["kill", "--grace", "-1"],
        ["daemon", "--grace", "nan"],
        ["daemon", "--turn-timeout", "0"],
    ],
    ids=" ".join,
)
def test_durations_must_be_finite_and_in_range(short_tmp: Path, args: list[str]) -> None:
    env = {"AGENTPLEX_RUNTIME_DIR": str(short_tmp / "run"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    line = fails(done, e.EXIT_USAGE)
    assert "finite number of seconds" in line and "Traceback" not in done.stderr


def test_grace_zero_is_a_kill_at_once(daemon: DaemonProcess, client: Client) -> None:
    sid = client.start("exec", argv=["cat"]).id
    ok(daemon, "kill", "--grace", "0", sid)
    assert client.inspect(sid).status is p.SessionStatus.TERMINATED


def test_a_program_that_does_not_exist_fails_the_start_and_leaves_no_session(
    daemon: DaemonProcess, client: Client
) -> None:
    done = daemon.cli("start", "-b", "exec", "--", "/nonexistent", timeout=CLI_TIMEOUT)
    line = fails(done, e.SpawnFailed.exit_code)
    assert e.SpawnFailed.exit_code != e.EXIT_SOFTWARE  # not "internal error"
    assert line == "agentplex start: cannot start '/nonexistent': No such file or directory"
    assert client.list(all=True).sessions == []
    assert not list((daemon.state_dir / "sessions").rglob("*.jsonl"))


def test_a_runtime_dir_too_long_for_a_socket_is_a_config_error(short_tmp: Path) -> None:
    runtime_dir = short_tmp / ("r" * 110)
    env = {"AGENTPLEX_RUNTIME_DIR": str(runtime_dir), "AGENTPLEX_STATE_DIR": str(short_tmp / "s")}
    for args in (["ls"], ["daemon", "--log-level", "error"]):
        done = subprocess.run(
            [*CLI, *args], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT
        )
        assert done.returncode == e.EXIT_CONFIG, done
        assert done.stderr.count("\n") == 1, done.stderr
        assert "longer than 107 bytes" in done.stderr and "no agentplex daemon" not in done.stderr


def test_ctrl_c_stops_the_foreground_daemon_cleanly_with_exit_130(short_tmp: Path) -> None:
    daemon = start_daemon(short_tmp, "--grace", "2")
    with daemon.client() as client:
        info = client.start("exec", argv=["cat"])
    daemon.process.send_signal(signal.SIGINT)  # what Ctrl-C at its terminal sends
    assert daemon.process.wait(timeout=CLI_TIMEOUT) == 130
    daemon.log_done.wait(CLI_TIMEOUT)
    stopped = [r for r in daemon.log_lines if r.get("event") == "daemon_stopped"]
    assert stopped and stopped[-1]["exit_code"] == 0  # a clean stop, not a forced one
    footer = list(read_records(info.transcript))[-1]
    assert isinstance(footer, p.Footer) and footer.reason == "daemon shutting down"


@pytest.mark.parametrize("command", ["kill", "ls", "send", "logs"])
def test_an_unknown_option_prints_the_subcommands_usage(short_tmp: Path, command: str) -> None:
    done = subprocess.run(
        [*CLI, command, "--no-such-option", "x"],
        env={"AGENTPLEX_RUNTIME_DIR": str(short_tmp / "run")},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )
    assert done.returncode == e.EXIT_USAGE
    assert done.stderr.startswith(f"usage: agentplex {command} "), done.stderr
    assert "--no-such-option" in done.stderr


# ---------------------------------------------------------------------- small surprises


def test_a_command_after_double_dash_is_refused_by_a_backend_that_takes_none(
    daemon: DaemonProcess, client: Client
) -> None:
    done = daemon.cli("start", "-b", "demo", "hello", "--", "make", "-j2", timeout=CLI_TIMEOUT)
    line = fails(done, e.EXIT_USAGE)
    assert "takes no command after --" in line and "make -j2" in line
    assert client.list(all=True).sessions == []


def test_when_the_active_session_ends_the_newest_live_one_becomes_active(
    daemon: DaemonProcess, client: Client
) -> None:
    oldest = client.start("exec", argv=["cat"]).id
    newer = client.start("exec", argv=["cat"]).id
    newest = client.start("exec", argv=["cat"]).id
    client.switch(oldest)
    with client.subscribe(p.SESSION_TOPIC) as events:
        ok(daemon, "kill", oldest)
        moved = next_event(events, lambda ev: isinstance(ev, p.ActiveChanged))
    assert moved == p.ActiveChanged(session_id=newest)
    assert listed(daemon) == {oldest: False, newer: False, newest: True}
    ok(daemon, "kill", newest)
    assert client.list().active == newer
    ok(daemon, "kill", newer)
    assert client.list().active is None
    assert "*" not in ok(daemon, "ls")
    fails(daemon.cli("send", "hello", timeout=CLI_TIMEOUT), e.EXIT_NOT_FOUND)


def test_the_tag_untagged_is_reserved(daemon: DaemonProcess, client: Client) -> None:
    done = daemon.cli("start", "-t", "untagged", *CAT, timeout=CLI_TIMEOUT)
    assert "reserved" in fails(done, e.EXIT_USAGE)
    with pytest.raises(e.InvalidName):
        client.start("exec", argv=["cat"], tag="untagged")
    assert client.list(all=True).sessions == []


def test_ls_columns_stay_aligned_for_every_status() -> None:
    sessions = [
        session_info(f"{status.value:x<8}"[:8] + "-id", status=status, backend="demo")
        for status in p.SessionStatus
    ]
    header, *rows = session_table(sessions, None).splitlines()
    turns_end = header.index("TURNS") + len("TURNS")
    for row in rows:
        assert row[turns_end - 1] == "0" and row[turns_end] == " ", (header, row)


# ---------------------------------------------------------------------- rendering chunks


def test_a_tool_call_names_its_tool_once() -> None:
    use = p.Chunk(p.ChunkKind.TOOL_USE, "Bash: echo hi", tool_name="Bash")
    assert describe(use) == "[tool_use] Bash: echo hi"
    bare = p.Chunk(p.ChunkKind.TOOL_USE, "echo hi", tool_name="Bash")  # a third-party driver
    assert describe(bare) == "[tool_use] Bash: echo hi"


def test_a_cancelled_result_says_cancelled_not_ok() -> None:
    usage = p.Usage(input_tokens=3, output_tokens=1)
    cancelled = p.Chunk(p.ChunkKind.RESULT, "cancelled", usage=usage)
    assert describe(cancelled).startswith("[result] cancelled, 3 in / 1 out tokens")
    assert describe(p.Chunk(p.ChunkKind.RESULT, "cancelled")) == "[result] cancelled"
    assert describe(p.Chunk(p.ChunkKind.RESULT, "end_turn", usage=usage)).startswith("[result] ok")



def test_the_daemon_refuses_a_negative_grace(daemon: DaemonProcess, client: Client) -> None:
    # (nan and infinity cannot reach it: JSON has neither, msgspec sends them as null)
    sid = client.start("exec", argv=["cat"]).id
    with pytest.raises(e.InvalidArgument):
        client.terminate(sid, grace=-1.0, timeout=CLI_TIMEOUT)
    assert client.inspect(sid).status is p.SessionStatus.RUNNING
    assert client.terminate(sid, grace=0, timeout=CLI_TIMEOUT).session.status is (
        p.SessionStatus.TERMINATED
    )
