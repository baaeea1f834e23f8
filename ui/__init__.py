"""agentplex's web dashboard: ``agentplex ui`` serves one page on 127.0.0.1 and bridges a
WebSocket to the daemon, as a client like any editor plugin.

Modules: ``security`` (token, cookie, Host/Origin checks, CSP), ``page_protocol`` (the JSON
frames between page and server), ``outbox`` (a page's bounded send queue), ``link`` (the one
connection to the daemon, shared by every page), ``bridge`` (one page's WebSocket), ``app``
(the Starlette application), ``server`` (binding, uvicorn, signals). Needs the ``ui`` extra.
"""
