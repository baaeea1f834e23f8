"""Reading a child's pipe: lines come back byte for byte, cut at the limit, memory bounded."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from agentplex.supervisor.output import READ_SIZE, Line, LineSplitter, logged_size, pump_lines

DAEMON_MAX_LINE = 1 << 20
"""The daemon's default ``max_line_bytes``."""

streams = st.lists(
    st.one_of(st.just(b"\n"), st.just(b"\n\n"), st.binary(min_size=1, max_size=70)), max_size=40
).map(b"".join)


def rebuild(lines: list[Line]) -> bytes:
    """The bytes the lines stand for: a complete line had a newline, a fragment did not."""
    return b"".join(line if fragment else line + b"\n" for line, fragment in lines)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(
    data=streams,
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    max_line=st.integers(min_value=1, max_value=64),
)
def test_lines_fed_in_any_pieces_rebuild_the_input_exactly_and_never_exceed_max_line(
    data: bytes, cuts: list[int], max_line: int
) -> None:
    splitter = LineSplitter(max_line)
    lines: list[Line] = []
    fed = 0
    for piece in pieces(data, cuts):
        lines += splitter.feed(piece)
        fed += len(piece)
        assert fed - len(rebuild(lines)) <= max_line, "the splitter holds more than max_line"
    lines += splitter.flush()

    assert rebuild(lines) == data
    assert all(len(line) <= max_line for line, _ in lines)
    assert not any(b"\n" in line for line, _ in lines)


@settings(max_examples=400, deadline=None)
@given(
    data=streams,
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    max_line=st.integers(min_value=1, max_value=16),
)
def test_the_lines_do_not_depend_on_how_the_stream_was_cut_into_reads(
    data: bytes, cuts: list[int], max_line: int
) -> None:
    whole = LineSplitter(max_line)
    at_once = whole.feed(data) + whole.flush()
    split = LineSplitter(max_line)
    piecewise = [line for piece in pieces(data, cuts) for line in split.feed(piece)]
    assert piecewise + split.flush() == at_once


def test_a_line_of_exactly_max_line_bytes_is_one_complete_line_however_it_is_read() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcd") + splitter.feed(b"\n") == [(b"abcd", False)]


def test_the_unterminated_tail_comes_out_as_a_fragment_at_end_of_file() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"one\ntw") == [(b"one", False)]
    assert splitter.feed(b"o") == []
    assert splitter.flush() == [(b"two", True)]
    assert splitter.flush() == []


def test_a_50_mb_line_in_64_kib_reads_never_holds_more_than_max_line() -> None:
    splitter = LineSplitter(DAEMON_MAX_LINE)
    read = b"x" * READ_SIZE
    reads = 50 * (1 << 20) // READ_SIZE
    fed = emitted = 0
    for _ in range(reads):
        lines = splitter.feed(read)
        fed += len(read)
        emitted += sum(len(line) for line, _ in lines)
        assert all(len(line) == DAEMON_MAX_LINE and fragment for line, fragment in lines)
        assert fed - emitted <= DAEMON_MAX_LINE
    emitted += sum(len(line) for line, _ in splitter.flush())
    assert emitted == fed == 50 * (1 << 20)


WRITER = (
    "import sys\n"
    "out = sys.stdout.buffer\n"
    "for i in range(2000):\n"
    "    out.write(b'line %d\\n' % i)\n"
    "out.write(b'y' * 250000 + b'\\n')\n"
    "out.write(b'no newline at the end')\n"
)


def test_pump_lines_delivers_a_real_pipe_in_order_and_flushes_the_tail_at_eof() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    batches: list[list[Line]] = []
    writer = subprocess.Popen([sys.executable, "-c", WRITER], stdout=write_fd)
    os.close(write_fd)
    try:
        anyio.run(pump_lines, read_fd, 100_000, batches.append)
    finally:
        os.close(read_fd)
        assert writer.wait(timeout=30) == 0

    lines = [line for batch in batches for line in batch]
    assert all(batches)
    assert lines[:2000] == [(b"line %d" % i, False) for i in range(2000)]
    assert lines[2000:] == [
        (b"y" * 100_000, True),
        (b"y" * 100_000, True),
        (b"y" * 50_000, False),
        (b"no newline at the end", True),
    ]


hostile = st.lists(
    st.one_of(
        st.just(b"\n"),
        st.binary(min_size=1, max_size=300),
        st.sampled_from([b"\x01" * 200, b'"' * 150, b"\xff" * 120, "é€😀".encode() * 40]),
    ),
    max_size=20,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=hostile, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_no_line_is_over_max_line_once_escaped_and_the_bytes_all_come_back(
    data: bytes, cuts: list[int]
) -> None:
    max_line = 64
    splitter = LineSplitter(max_line)
    lines = [line for piece in pieces(data, cuts) for line in splitter.feed(piece)]
    lines += splitter.flush()
    assert rebuild(lines) == data
    assert all(line for line, fragment in lines if fragment), "a cut never makes an empty piece"
    assert all(logged_size(line) <= max_line for line, _ in lines)


def test_a_mib_of_control_bytes_is_cut_so_that_each_logged_chunk_stays_near_max_line() -> None:
    splitter = LineSplitter(DAEMON_MAX_LINE)
    lines = splitter.feed(b"\x01" * (1 << 20)) + splitter.feed(b"\x02" * 100 + b"\n")
    assert sum(len(line) for line, _ in lines) == (1 << 20) + 100
    assert all(logged_size(line) <= DAEMON_MAX_LINE for line, _ in lines)
    assert [fragment for _, fragment in lines] == [True] * (len(lines) - 1) + [False]
    assert len(lines) <= 8, "pieces are packed, not cut to a worst-case size"


def test_a_cut_never_splits_a_multibyte_character() -> None:
    text = "€" * 100_000  # 300,000 bytes, 3 per character, none of them on a cut boundary
    splitter = LineSplitter(2**16)
    lines = splitter.feed(text.encode()) + splitter.flush()
    assert "".join(line.decode() for line, _ in lines) == text  # each piece valid UTF-8
