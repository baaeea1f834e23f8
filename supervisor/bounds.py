"""The daemon's memory bounds in bytes, and the ZeroMQ high-water marks they come to.

ZeroMQ counts a queue in messages, whatever their size: a high-water mark of 10,000 holds
10,000 messages of 1 MiB as readily as of 100 bytes. So every queue a peer can make the
daemon keep is bounded here as (high-water mark) x (largest message it can hold), and the
mark is derived from a byte budget in the config:

- a line is at most ``max_line_bytes`` once logged (``output.py`` cuts it before it is
  escaped), so a chunk message is at most :func:`largest_chunk_message`;
- a replay page stops at ``replay_page_bytes`` (at least one message), so a reply is at
  most :func:`largest_reply`, and a control client that does not read its replies pins at
  most ``client_buffer_bytes`` in its queue (:func:`control_send_hwm`), plus its share of
  the replies waiting for full queues (:func:`waiting_replies_bytes`, for all clients);
  the rest is dropped;
- a chunk message over ``pub_max_message_bytes`` is published as an ``elided`` marker, so
  a subscriber that does not read pins at most ``subscriber_buffer_bytes`` of chunks
  (:func:`pub_send_hwm`; PUB drops the rest, which ``replay`` refills).
"""

from __future__ import annotations

from typing import Final

from agentplex.supervisor.config import Config
from agentplex.supervisor.output import READ_SIZE, WORST_EXPANSION

ENVELOPE: Final = 64 << 10
"""Room for a message's fields around its text (ids, seq, kind, ts, usage, the reply's own)."""


def largest_chunk_message(config: Config) -> int:
    """The most bytes one chunk message can take: a line of ``max_line_bytes`` logged, and
    the other lines of the same read in one batch."""
    return config.max_line_bytes + WORST_EXPANSION * READ_SIZE + ENVELOPE


def largest_reply(config: Config) -> int:
    """The most bytes one control reply can take (a replay page is the largest)."""
    return max(config.replay_page_bytes, largest_chunk_message(config)) + ENVELOPE


def control_send_hwm(config: Config) -> int:
    """Replies the control socket queues for one client, so that one that never reads
    pins at most ``client_buffer_bytes``."""
    return max(1, config.client_buffer_bytes // largest_reply(config))


def waiting_replies_bytes(config: Config) -> int:
    """Replies that may wait, for all clients together, for a client's full queue to
    drain (``outbox.py``): a quarter of ``client_buffer_bytes``, and room for one reply."""
    return max(config.client_buffer_bytes // 4, largest_reply(config))


def pub_send_hwm(config: Config) -> int:
    """Events the events socket queues for one subscriber, so that one that never reads
    pins at most ``subscriber_buffer_bytes`` of chunk messages."""
    by_bytes = config.subscriber_buffer_bytes // config.pub_max_message_bytes
    return max(1, min(config.pub_high_water_mark, by_bytes))
