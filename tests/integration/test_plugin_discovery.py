"""
A team's plugin reaches a real C{python -m twisted_rproxy} (and C{twistd
rproxy}) only through C{twisted.plugins} on C{PYTHONPATH}: no change to the
core, no registration.  A plugin that cannot import, or that clashes with a
built-in, stops start-up with an error naming it.

The plugins are the fixtures in C{tests/plugintest/}, copied to a temporary
directory per test so their dropin caches never touch the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from .harness import RproxyRunner, _subprocessEnv, freePort, proxyConfig, request

FIXTURES = Path(__file__).resolve().parents[1] / "plugintest"


@pytest.fixture
def pluginPath(tmp_path: Path) -> Any:
    """
    Factory: C{pluginPath("feature")} copies that fixture and returns the
    directory to put on C{PYTHONPATH}.
    """

    def copy(fixture: str) -> Path:
        """Copy one fixture directory; return the copy."""
        target = tmp_path / ("path-" + fixture)
        shutil.copytree(FIXTURES / fixture, target)
        assert not (target / "twisted" / "__init__.py").exists()
        assert not (target / "twisted" / "plugins" / "__init__.py").exists()
        return target

    return copy


def environmentWith(entries: List[Path]) -> Dict[str, str]:
    """
    @return: the subprocess environment (this checkout first) with the
        plugin directories added to C{PYTHONPATH}.
    """
    env = _subprocessEnv()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"]] + [str(e) for e in entries])
    return env


class PluginRunner(RproxyRunner):
    """
    C{python -m twisted_rproxy} with plugin directories on C{PYTHONPATH}.
    """

    def __init__(self, confText: str, entries: List[Path], **kwargs: Any) -> None:
        """Remember the plugin directories."""
        super().__init__(confText, **kwargs)
        self.entries = entries

    def environment(self) -> Optional[Dict[str, str]]:
        """This checkout, then the plugins."""
        return environmentWith(self.entries)


@pytest.fixture
def pluginRunner(request: Any) -> Any:
    """
    Factory: C{pluginRunner(confText, entries, start=True)}; every runner
    is cleaned up when the test ends.
    """
    made: List[PluginRunner] = []

    def cleanup() -> None:
        """Stop and remove every runner made."""
        for runner in made:
            runner.cleanup()

    request.addfinalizer(cleanup)

    def factory(confText: str, entries: List[Path], start: bool = True) -> PluginRunner:
        """Make (and start) a runner."""
        runner = PluginRunner(confText, entries)
        made.append(runner)
        if start:
            runner.start()
        return runner

    return factory


TEAM_LOCATION = """\
        location /team {
            x_team_header X-Team $team_name;
            x_team_header X-Team-Backend $upstream_addr;
            proxy_pass http://%s;
        }
        location / { return 200 "no team here"; }
"""


def testPluginServes(backend: Any, pluginPath: Any, pluginRunner: Any) -> None:
    """
    With the plugin on C{PYTHONPATH}, its directive configures a location
    and its filter adds the headers to proxied responses.
    """
    port = freePort()
    runner = pluginRunner(
        proxyConfig(port, TEAM_LOCATION % backend.address), [pluginPath("feature")]
    )
    response = request(port, path="/team/x")
    assert response.status == 200
    assert response.json()["uri"] == "/team/x"
    assert response.header("X-Team") == "platform"
    assert response.header("X-Team-Backend") == backend.address
    plain = request(port, path="/")
    assert (plain.body, plain.header("X-Team")) == (b"no team here", None)
    assert runner.isRunning()


def testPluginInConfigTest(pluginPath: Any, tmp_path: Path) -> None:
    """
    C{-t} knows the directive with the plugin installed, and calls it
    unknown (at file:line) without it.
    """
    conf = tmp_path / "nginx.conf"
    conf.write_text(proxyConfig(freePort(), TEAM_LOCATION % "127.0.0.1:9"), encoding="utf-8")
    argv = [sys.executable, "-m", "twisted_rproxy", "-p", str(tmp_path), "-t", "-c", str(conf)]
    withPlugin = subprocess.run(
        argv, env=environmentWith([pluginPath("feature")]), capture_output=True, text=True, timeout=60
    )
    assert withPlugin.returncode == 0, withPlugin.stderr
    assert "test is successful" in withPlugin.stderr
    without = subprocess.run(argv, env=environmentWith([]), capture_output=True, text=True, timeout=60)
    assert without.returncode == 1
    line = conf.read_text().splitlines().index("            x_team_header X-Team $team_name;") + 1
    assert f'unknown directive "x_team_header" in {conf}:{line}' in without.stderr


def testPluginUnderTwistd(pluginPath: Any, tmp_path: Path) -> None:
    """
    C{twistd rproxy} finds the same plugin.
    """
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(proxyConfig(freePort(), TEAM_LOCATION % "127.0.0.1:9"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "rproxy", "--test", "--config", str(conf)],
        cwd=str(tmp_path), env=environmentWith([pluginPath("feature")]),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def testBrokenPluginStopsStartup(pluginPath: Any, pluginRunner: Any) -> None:
    """
    A plugin whose import raises: start-up fails with exit 1 and an error
    naming the plugin module, its file and the exception.
    """
    entry = pluginPath("broken")
    runner = pluginRunner(
        proxyConfig(freePort(), 'location / { return 200 "x"; }'), [entry], start=False
    )
    assert runner.runToExit() == 1
    stderr = runner.stderr
    assert 'plugin module "twisted.plugins.rproxy_broken"' in stderr
    assert str(entry / "twisted" / "plugins" / "rproxy_broken.py") in stderr
    assert "TEAM_TOKEN is not set" in stderr
    assert "[emerg]" in stderr


def testBrokenPluginFailsConfigTest(pluginPath: Any, tmp_path: Path) -> None:
    """
    C{-t} fails the same way, so a deploy check catches it.
    """
    conf = tmp_path / "nginx.conf"
    conf.write_text(proxyConfig(freePort(), 'location / { return 200 "x"; }'), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "twisted_rproxy", "-p", str(tmp_path), "-t", "-c", str(conf)],
        env=environmentWith([pluginPath("broken")]), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "rproxy_broken" in result.stderr
    assert "test failed" in result.stderr


def testClashingPluginStopsStartup(pluginPath: Any, pluginRunner: Any) -> None:
    """
    A plugin re-declaring a built-in directive: exit 1 naming both
    modules.
    """
    runner = pluginRunner(
        proxyConfig(freePort(), 'location / { return 200 "x"; }'), [pluginPath("clash")], start=False
    )
    assert runner.runToExit() == 1
    assert (
        'directive "add_header" is declared by both module "headers" and module "team_clash"'
        in runner.stderr
    )
