"""The wire protocol: every message survives encode/decode, topics filter by prefix as
documented, every error has its own code, and the package exports what ``__all__`` says."""

from __future__ import annotations

import functools
import importlib
import re
import types
import typing
import uuid

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import session_info

import agentplex.client
from agentplex import protocol as p
from agentplex.cli.parser import EPILOG
from agentplex.protocol import errors as e

UNIONS = {
    "request": (p.Request, p.request_decoder),
    "reply": (p.Reply, p.reply_decoder),
    "event": (p.Event, p.event_decoder),
    "record": (p.Record, p.record_decoder),
}
MEMBERS = [
    pytest.param(cls, decoder, id=f"{union}-{cls.__name__}")
    for union, (members, decoder) in UNIONS.items()
    for cls in typing.get_args(members)
]

# ----------------------------------------------------------------- strategies

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOAT = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=8)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | INT64 | FLOAT | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def strategy_for(t: mi.Type) -> st.SearchStrategy[typing.Any]:
    """Values of a msgspec type that JSON can carry, built from the type's own schema, so
    a field added to the protocol is covered without touching this test."""
    match t:
        case mi.StructType(cls=cls, fields=fields):
            return st.builds(cls, **{f.name: strategy_for(f.type) for f in fields})
        case mi.UnionType(types=members):
            return st.one_of([strategy_for(m) for m in members])
        case mi.StrType():
            return TEXT
        case mi.IntType():
            return INT64
        case mi.FloatType():
            return FLOAT
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.EnumType(cls=cls):
            return st.sampled_from(list(cls))
        case mi.ListType(item_type=item):
            return st.lists(strategy_for(item), max_size=3)
        case mi.DictType(key_type=key, value_type=value):
            return st.dictionaries(strategy_for(key), strategy_for(value), max_size=3)
        case mi.AnyType():
            return JSON_VALUE
        case mi.RawType():
            return JSON_VALUE.map(lambda value: msgspec.Raw(msgspec.json.encode(value)))
    raise NotImplementedError(f"no strategy for {t!r}: extend strategy_for")


@functools.cache
def messages(cls: type[msgspec.Struct]) -> st.SearchStrategy[typing.Any]:
    return strategy_for(mi.type_info(cls))


# ----------------------------------------------------------------- round trips


@pytest.mark.parametrize(("cls", "decoder"), MEMBERS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_message_type_round_trips_through_its_unions_decoder(
    cls: type[msgspec.Struct], decoder: msgspec.json.Decoder[typing.Any], data: st.DataObject
) -> None:
    message = data.draw(messages(cls))
    wire = p.encode(message)
    decoded = decoder.decode(wire)
    assert msgspec.json.decode(wire)["type"] == cls.__struct_config__.tag
    assert type(decoded) is cls
    assert decoded == message
    assert p.encode(decoded) == wire


def test_the_union_members_have_distinct_tags_within_each_union() -> None:
    for members, _decoder in UNIONS.values():
        tags = [cls.__struct_config__.tag for cls in typing.get_args(members)]
        assert len(tags) == len(set(tags)), tags


def test_a_request_gets_the_current_protocol_version_and_id_zero_by_default() -> None:
    request = p.request_decoder.decode(b'{"type":"ping"}')
    assert request == p.Ping(id=0, v=p.PROTOCOL_VERSION)


def test_the_envelope_still_reads_id_version_and_type_of_a_request_it_cannot_decode() -> None:
    frame = b'{"type":"no_such_request","id":7,"v":99,"extra":[1,2]}'
    with pytest.raises(msgspec.ValidationError):
        p.request_decoder.decode(frame)
    assert p.envelope_decoder.decode(frame) == p.Envelope(id=7, v=99, type="no_such_request")


def test_the_ended_statuses_are_exactly_exited_terminated_and_failed() -> None:
    ended = {status for status in p.SessionStatus if status.ended}
    assert ended == {p.SessionStatus.EXITED, p.SessionStatus.TERMINATED, p.SessionStatus.FAILED}


# ----------------------------------------------------------------- topics

SID = str(uuid.uuid4())
OTHER = str(uuid.uuid4())


def _info(session_id: str) -> p.SessionInfo:
    return session_info(session_id)


def _chunk(session_id: str) -> p.Chunk:
    return p.Chunk(
        session_id=session_id,
        seq=1,
        stream=p.Stream.STDOUT,
        kind=p.ChunkKind.TEXT,
        text="hi",
        ts=0.0,
    )


def _status(session_id: str) -> p.StatusChanged:
    return p.StatusChanged(
        session_id=session_id,
        status=p.SessionStatus.IDLE,
        previous=p.SessionStatus.RUNNING,
        ts=0.0,
    )


def _session_events(session_id: str) -> list[p.Event]:
    return [
        _chunk(session_id),
        p.SessionCreated(session=_info(session_id)),
        p.SessionTerminated(session=_info(session_id), reason="done"),
        _status(session_id),
    ]


TABLE_EVENTS: list[p.Event] = [
    p.SessionListChanged(sessions=[_info(SID)], active=SID),
    p.ActiveChanged(session_id=SID),
    p.Heartbeat(pid=1, ts=0.0, sessions=1),
    p.SyncMark(token="abc"),
]


@pytest.mark.parametrize(
    ("event", "topic"),
    [
        (_chunk(SID), f"agent.chunk.{SID}"),
        (p.SessionCreated(session=_info(SID)), f"session.created.{SID}"),
        (p.SessionTerminated(session=_info(SID), reason="x"), f"session.terminated.{SID}"),
        (_status(SID), f"session.status_changed.{SID}"),
        (p.SessionListChanged(sessions=[], active=None), "session.list_changed"),
        (p.ActiveChanged(session_id=SID), "session.active_changed"),
        (p.Heartbeat(pid=1, ts=0.0, sessions=0), "daemon.heartbeat"),
        (p.SyncMark(token="abc"), "daemon.sync.abc"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_topic_of_names_the_event_and_the_session_it_belongs_to(event: p.Event, topic: str) -> None:
    assert p.topic_of(event) == topic.encode()


def test_a_chunks_topic_is_its_sessions_chunk_topic() -> None:
    assert p.topic_of(_chunk(SID)) == p.chunk_topic(SID) == p.CHUNK_TOPIC + SID.encode()
    batch = p.ChunkBatch(
        session_id=SID,
        first_seq=7,
        last_seq=8,
        stream=p.Stream.STDOUT,
        kind=p.ChunkKind.TEXT,
        texts=["a", "b"],
        ts=1.0,
    )
    assert p.topic_of(batch) == p.chunk_topic(SID)
    assert [(c.seq, c.text) for c in p.expand(batch)] == [(7, "a"), (8, "b")]


@settings(max_examples=150, deadline=None)
@given(event=st.one_of([messages(cls) for cls in typing.get_args(p.Event)]))
def test_every_topic_falls_under_exactly_the_prefix_of_its_family(event: p.Event) -> None:
    topic = p.topic_of(event)
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    if isinstance(event, p.ChunkBatch):  # a batch rides its session's single-chunk topic
        tag = "agent.chunk"
    assert topic == tag.encode() or topic.startswith(tag.encode() + b".")
    families = [
        prefix
        for prefix in (p.CHUNK_TOPIC, p.SESSION_TOPIC, p.DAEMON_TOPIC, p.PANEL_TOPIC)
        if topic.startswith(prefix)
    ]
    expected = {
        "agent": p.CHUNK_TOPIC,
        "session": p.SESSION_TOPIC,
        "daemon": p.DAEMON_TOPIC,
        "panel": p.PANEL_TOPIC,
    }
    assert families == [expected[tag.split(".")[0]]]


def _tag(event: p.Event) -> str:
    return str(type(event).__struct_config__.tag)


def _received(prefixes: list[bytes], events: list[p.Event]) -> list[p.Event]:
    """What a ZeroMQ SUB socket subscribed to ``prefixes`` lets through."""
    return [ev for ev in events if any(p.topic_of(ev).startswith(pre) for pre in prefixes)]


def test_subscribing_to_one_sessions_topics_receives_that_session_only() -> None:
    mine, theirs = _session_events(SID), _session_events(OTHER)
    prefixes = [p.chunk_topic(SID)] + [
        f"session.{what}.{SID}".encode() for what in ("created", "terminated", "status_changed")
    ]
    assert _received(prefixes, mine + theirs + TABLE_EVENTS) == mine


def test_subscribing_to_the_session_prefix_receives_lifecycle_but_no_chunks() -> None:
    everything = _session_events(SID) + TABLE_EVENTS
    received = _received([p.SESSION_TOPIC], everything)
    lifecycle = [ev for ev in everything if _tag(ev).startswith("session.")]
    assert received == lifecycle
    assert not any(isinstance(ev, p.Chunk) for ev in received)
    assert _received([p.CHUNK_TOPIC], everything) == [_chunk(SID)]
    assert _received([p.DAEMON_TOPIC], everything) == TABLE_EVENTS[2:]


# ----------------------------------------------------------------- errors

ERROR_CLASSES = [
    obj
    for obj in vars(e).values()
    if isinstance(obj, type) and issubclass(obj, e.AgentplexError) and obj is not e.AgentplexError
]


def documented_exit_codes() -> set[int]:
    """The exit codes ``agentplex --help`` lists (its epilog's ``exit codes:`` paragraph)."""
    paragraph = EPILOG.split("exit codes:", 1)[1].split("\n\n", 1)[0]
    return {int(code) for code in re.findall(r"(?:^|[:,])\s*(\d+) ", paragraph)}


def test_every_error_class_has_its_own_code() -> None:
    codes = [cls.code for cls in ERROR_CLASSES]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert len(ERROR_CLASSES) >= 20


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_error_from_code_gives_back_the_class_of_each_code(cls: type[e.AgentplexError]) -> None:
    error = e.error_from_code(cls.code, "what happened")
    assert type(error) is cls
    assert error.message == "what happened"
    assert e.ERRORS_BY_CODE[cls.code] is cls


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_has_a_one_line_docstring_and_an_exit_code_the_help_documents(
    cls: type[e.AgentplexError],
) -> None:
    assert cls.__doc__ and "\n" not in cls.__doc__.strip()
    assert cls.exit_code in documented_exit_codes()


def test_the_help_documents_the_usual_exit_codes() -> None:
    assert {0, 2, 3, 4, 69, 70, 75, 130} <= documented_exit_codes()


def test_the_code_table_holds_exactly_the_error_classes() -> None:
    assert set(e.ERRORS_BY_CODE.values()) == set(ERROR_CLASSES)


def test_an_unknown_code_becomes_a_plain_agentplex_error_that_names_the_code() -> None:
    error = e.error_from_code("from_a_newer_daemon", "something new went wrong")
    assert type(error) is e.AgentplexError
    assert "something new went wrong" in error.message
    assert "from_a_newer_daemon" in error.message
    assert error.exit_code == e.EXIT_SOFTWARE


# ----------------------------------------------------------------- exports


def test_the_client_package_exports_exactly_its_all() -> None:
    names = agentplex.client.__all__
    assert len(names) == len(set(names))
    public = {
        name
        for name, value in vars(agentplex.client).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(names)


def test_every_name_in_all_is_importable_from_the_package() -> None:
    fresh = importlib.import_module("agentplex.client")
    namespace: dict[str, object] = {}
    exec("from agentplex.client import *", namespace)  # the star import honours __all__
    for name in fresh.__all__:
        assert namespace[name] is getattr(fresh, name)
    assert set(namespace) - {"__builtins__"} == set(fresh.__all__)
