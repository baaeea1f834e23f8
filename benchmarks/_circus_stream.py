"""A circus stream class that publishes each chunk circus hands it on a ZeroMQ PUB socket.

Loaded inside circusd (``stdout_stream.class = _circus_stream.PubStream`` with this folder
on PYTHONPATH). Circus calls the stream with ``{"data": bytes, "pid": int, "name": str}``
for every read of a child's pipe (at most 1 KiB each: circus's Redirector buffer), so one
message carries whatever that read got: no seq, no session id, lines may be cut across
messages. The subscriber counts newlines. Message: ``[b"circus.<pid>", data]``.
"""

from __future__ import annotations

from typing import Any

import zmq


class PubStream:
    """Publishes every chunk, unchanged, under the topic ``circus.<pid>``."""

    def __init__(self, endpoint: str, **_options: Any) -> None:
        self._socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, 0)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(endpoint)

    def __call__(self, data: dict[str, Any]) -> None:
        topic = b"circus.%d" % data["pid"]
        self._socket.send_multipart((topic, data["data"]), flags=zmq.NOBLOCK)

    def close(self) -> None:
        self._socket.close()
