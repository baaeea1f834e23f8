"""The Starlette application: the page, its static files, and the ``/ws`` bridge, behind
the :class:`~agentplex.ui.security.Guard`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from agentplex.ui.bridge import serve_page
from agentplex.ui.link import DaemonLink
from agentplex.ui.security import Access, Guard

STATIC_DIR: Final = Path(__file__).parent / "static"
"""The page: shipped in the package (no build step), served as it is."""


def create_app(link: DaemonLink, access: Access) -> Starlette:
    """The dashboard application; the link to the daemon runs while it is served."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            await tg.start(link.run)
            yield
            link.close_all()
            tg.cancel_scope.cancel()

    async def index(request: Request) -> Response:
        page = STATIC_DIR / "index.html"
        if not page.is_file():  # a broken install: say so rather than a bare 404
            return PlainTextResponse(f"{page} is missing: reinstall agentplex[ui]\n", 500)
        return FileResponse(page, media_type="text/html; charset=utf-8")

    async def websocket(ws: WebSocket) -> None:
        await serve_page(ws, link)

    routes = [
        Route("/", index),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False)),
        WebSocketRoute("/ws", websocket),
    ]
    guard = Middleware(Guard, access=access)
    return Starlette(routes=routes, middleware=[guard], lifespan=lifespan)
