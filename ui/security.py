"""Who may use the dashboard: the token, its cookie, the Host and Origin checks, and CSP.

A local web server is reachable by every web page the user opens, so each request must
prove three things. The token (printed once, as Jupyter does) proves the caller read the
URL this command printed: it becomes an HttpOnly, SameSite=Strict cookie, so no other
site's page can send it and no script can read it. The Host header must name the
loopback address and this port: a DNS-rebinding page (``evil.example`` re-pointed at
127.0.0.1) sends its own name there. The Origin, required on a WebSocket upgrade (which
browsers do not guard by same-origin policy) and checked on HTTP when present, must be
this server. The page is served under a strict Content-Security-Policy, so even text an
agent wrote cannot run as script in it.

:class:`Guard` is a pure ASGI middleware: the same checks cover HTTP requests and
WebSocket upgrades, before any route sees them.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE: Final = "agentplex_ui"
TOKEN_PARAM: Final = "token"
LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost", "[::1]")
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
WS_POLICY_VIOLATION: Final = 1008
"""Closing an upgrade before accepting it: the server answers HTTP 403."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Access:
    """What a request must carry to reach this server on ``port``."""

    token: str
    port: int

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(f"{name}:{self.port}" for name in LOOPBACK_NAMES)

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.hosts)

    def token_matches(self, candidate: str | None) -> bool:
        """Constant-time: a guessing page learns nothing from how long a refusal takes."""
        if candidate is None:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())


class Guard:
    """Refuses what :class:`Access` does not allow; adds the security headers to every
    HTTP response."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        if scope["type"] == "http":  # not per WebSocket frame: a refused upgrade is 403 bare
            send = _with_headers(send)
        refusal = self._refusal(scope)
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
            else:
                await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        """The response refusing this request, or None to let it through."""
        headers = Headers(scope=scope)
        if headers.get("host", "").lower() not in self.access.hosts:
            return _text(400, "bad Host header: open the dashboard at 127.0.0.1 or localhost")
        origin = headers.get("origin")
        websocket = scope["type"] == "websocket"
        if (origin is not None or websocket) and origin not in self.access.origins:
            return _text(403, "cross-origin requests are refused")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if not websocket and TOKEN_PARAM in query:
            return self._exchange(scope, query)
        if not self.access.token_matches(HTTPConnection(scope).cookies.get(COOKIE)):
            return _text(401, "open the URL that 'agentplex ui' printed (it carries a token)")
        return None

    def _exchange(self, scope: Scope, query: dict[str, str]) -> Response:
        """The token in the URL becomes the cookie; the URL loses the token (history, logs)."""
        if not self.access.token_matches(query.pop(TOKEN_PARAM)):
            return _text(401, "wrong token: open the URL that 'agentplex ui' printed")
        target = scope["path"] + (f"?{urlencode(query)}" if query else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, self.access.token, path="/", httponly=True, samesite="strict")
        return response


def _text(status: int, message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=status)


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return sending
