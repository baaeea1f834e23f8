"""Third-party backends install through the ``agentplex.backends`` entry-point group."""

from __future__ import annotations

import textwrap
from pathlib import Path

from support import is_chunk, next_event, start_daemon

from agentplex import protocol as p

PLUGIN = '''
from agentplex.plugins.api import BackendMode, Capabilities, Driver, Located


class ShoutBackend:
    """Echoes each message back in capitals (a long-lived `tr` process)."""

    id = "shout"
    modes = (BackendMode.LONG_LIVED,)
    description = "a third-party test backend"
    capabilities = Capabilities(long_lived=True)

    def locate(self):
        return Located(True, executable="tr", version="9.9")

    def version(self, executable):
        return "9.9"

    def argv(self, spec, message, resume_id):
        return ["stdbuf", "-oL", "tr", "a-z", "A-Z"]

    def environment(self, spec):
        return {}

    def driver(self, spec):
        return Driver()


def broken():
    raise RuntimeError("this plugin cannot load")
'''


def _install(site: Path) -> None:
    (site / "shout_plugin.py").write_text(PLUGIN)
    dist = site / "shout_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [agentplex.backends]
            shout = shout_plugin:ShoutBackend
            broken = shout_plugin:broken
            """
        )
    )


def test_an_installed_plugin_backend_runs_sessions_and_a_broken_one_is_skipped(
    short_tmp: Path,
) -> None:
    site = short_tmp / "site"
    site.mkdir()
    _install(site)
    daemon = start_daemon(short_tmp, env={"PYTHONPATH": str(site)})
    try:
        with daemon.client() as client, client.subscribe(p.CHUNK_TOPIC) as events:
            backends = {b.id: b for b in client.backends()}
            assert backends["shout"].version == "9.9"
            assert "broken" not in backends
            info = client.start("shout", "hello plugin")
            next_event(events, is_chunk(info.id, text="HELLO PLUGIN"))
        assert any(line.get("event") == "backend_plugin_failed" for line in daemon.log_lines)
    finally:
        assert daemon.stop() == 0
