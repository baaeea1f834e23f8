"""``agentplex ui``: the web dashboard, a client of the daemon like any editor plugin.

Starlette and uvicorn come with the optional ``ui`` extra, so :mod:`agentplex.ui` is
imported only here, inside the command: every other command works without them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agentplex.protocol.errors import ExtraMissing
from agentplex.protocol.paths import default_runtime_dir, default_state_dir

DEFAULT_PORT = 8765
EXTRA_PACKAGES = frozenset({"starlette", "uvicorn", "websockets"})
"""What the ``ui`` extra installs: one of them missing means the extra is not installed."""

EPILOG = """\
It prints a URL carrying a random token (with --json, one line {"url", "port", "pid"})
and serves until Ctrl-C or SIGTERM. Opening the URL once turns the token into a cookie
(HttpOnly, SameSite=Strict); requests without it are refused, and so are requests whose
Host is not 127.0.0.1/localhost (DNS rebinding) and WebSockets from another origin. With
no daemon running the page still serves, shows the daemon down, and connects when one
starts.

The token is kept in $AGENTPLEX_STATE_DIR/ui/token (mode 0600), so a restarted dashboard
keeps open pages logged in; --new-token replaces it and logs every page out.

needs the ui extra:  pip install 'agentplex[ui]'

examples:
  agentplex ui --open                         # serve on 127.0.0.1:8765, open a browser
  agentplex ui --port 0 --json                # any free port; the URL as JSON, for scripts
  agentplex ui --new-token                    # a new token: pages opened before log out
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    u = sub.add_parser(
        "ui",
        help="serve the web dashboard on 127.0.0.1 (needs agentplex[ui])",
        description="Serve a live web dashboard of every session and panel on 127.0.0.1.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    u.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default 8765; 0: any free port)"
    )
    u.add_argument("--open", action="store_true", help="open the URL in the web browser")
    u.add_argument("--json", action="store_true", help='print {"url", "port", "pid"} as JSON')
    u.add_argument(
        "--new-token",
        action="store_true",
        help="replace the kept token (every page opened with the old one must log in again)",
    )


def run(args: argparse.Namespace) -> int:
    """``agentplex ui``."""
    try:
        from agentplex.ui import server
    except ImportError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in EXTRA_PACKAGES:
            raise
        message = f"the web dashboard needs {package}: pip install 'agentplex[ui]'"
        raise ExtraMissing(message) from None
    return server.run(
        port=args.port,
        runtime_dir=Path(default_runtime_dir()),
        state_dir=Path(default_state_dir()),
        rotate_token=args.new_token,
        open_browser=args.open,
        as_json=args.json,
    )
