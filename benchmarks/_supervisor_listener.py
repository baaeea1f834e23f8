"""A supervisord event listener that notes when supervisord reports a process's exit.

Runs as ``[eventlistener:deaths]`` with ``events=PROCESS_STATE_EXITED``. For each event
it appends ``<pid> <CLOCK_MONOTONIC ns at receipt>`` to the file named by ``argv[1]``:
the moment a subscriber of supervisord's events learns of the death. Standard library only.
"""

from __future__ import annotations

import os
import sys
import time


def fields(text: str) -> dict[str, str]:
    return dict(token.split(":", 1) for token in text.split() if ":" in token)


def main(out_path: str) -> None:
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        header = stdin.readline()
        if not header:
            return
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        payload = stdin.read(int(fields(header.decode())["len"])).decode()
        pid = fields(payload).get("pid")
        if pid:
            os.write(out, f"{pid} {now}\n".encode())
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
