"""
The C{rproxy} command (C{python -m twisted_rproxy}) and C{twistd rproxy} as
real processes: nginx's flags, exit statuses and messages, the pid file,
and the signals an init script or a unit file sends (reload, reopen, quit,
stop), so tools written for nginx drive twisted_rproxy unchanged.

Every wait polls with a deadline; no test sleeps for a fixed time.
"""

from __future__ import annotations

import http.client
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytest

from .harness import (
    REPO_ROOT,
    RproxyRunner,
    StartupError,
    _subprocessEnv,
    freePort,
    portAccepts,
    proxyConfig,
    request,
)

DEADLINE = 15.0
"""How long any awaited change may take before the test fails."""


def waitFor(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """
    Poll C{check} until it returns something true, and return that; fail
    the test with C{what} once C{timeout} seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def rproxyCommand(prefix: Path, *args: str) -> List[str]:
    """
    @return: the argv of C{python -m twisted_rproxy -p PREFIX ARGS...}.
    """
    return [sys.executable, "-m", "twisted_rproxy", "-p", str(prefix), *args]


def run(argv: List[str], cwd: Path, env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    """
    Run a command that should finish by itself (-t, -v, -s) and return
    its exit status and output.
    """
    return subprocess.run(
        argv, cwd=str(cwd), env=env or _subprocessEnv(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """A fresh prefix directory with C{logs/}, as nginx's has."""
    (tmp_path / "logs").mkdir()
    return tmp_path


def write(path: Path, text: str) -> Path:
    """Write a config file; return its path."""
    path.write_text(text, encoding="utf-8")
    return path


def versionConfig(port: int, version: str, backend: Any, mainExtra: str = "") -> str:
    """
    A config answering C{/version} itself and proxying the rest to the
    backend, both saying which version of the config served them.
    """
    return proxyConfig(
        port,
        f'        location = /version {{ return 200 "{version}"; }}\n'
        f"        location / {{ proxy_pass http://{backend.address};"
        f" proxy_set_header X-Config-Version {version}; }}\n",
        mainExtra=mainExtra,
    )


def configVersion(port: int) -> str:
    """The body of C{GET /version}."""
    return request(port, path="/version").body.decode()


def backendSawVersion(port: int) -> str:
    """The X-Config-Version header the backend received for C{GET /echo}."""
    headers = request(port, path="/echo").json()["headers"]
    return dict((name.lower(), value) for name, value in headers)["x-config-version"]


def listeningInode(port: int) -> Optional[str]:
    """
    The inode of the socket listening on 127.0.0.1:PORT (from
    /proc/net/tcp), so a test can tell the same socket from a new one.
    """
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return None
    wanted = "0100007F:%04X" % port
    for row in rows:
        fields = row.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
            return fields[9]
    return None


# ---------------------------------------------------------------------------
# -t, -T, -v, -V
# ---------------------------------------------------------------------------


def testTestGoodConfig(prefix: Path) -> None:
    """
    C{-t} on a good config exits 0 with nginx's two lines on stderr, and
    notices for directives with no effect here.
    """
    conf = write(prefix / "good.conf", proxyConfig(freePort(), "location / { return 200 ok; }"))
    result = run(rproxyCommand(prefix, "-t", "-c", "good.conf"), prefix)
    assert result.returncode == 0, result.stderr
    assert f"rproxy: the configuration file {conf} syntax is ok\n" in result.stderr
    assert f"rproxy: configuration file {conf} test is successful\n" in result.stderr
    assert 'directive "client_body_temp_path" has no effect' in result.stderr
    assert result.stdout == ""


def testTestQuiet(prefix: Path) -> None:
    """
    C{-q} with C{-t} prints nothing when all is well.
    """
    write(prefix / "good.conf", proxyConfig(freePort(), "location / { return 200 ok; }"))
    result = run(rproxyCommand(prefix, "-t", "-q", "-c", "good.conf"), prefix)
    assert (result.returncode, result.stderr) == (0, "")


def testTestBadConfig(prefix: Path) -> None:
    """
    C{-t} on a bad config exits 1 naming the error, file and line, as
    nginx's C{[emerg]} line does, then says the test failed.
    """
    conf = write(
        prefix / "bad.conf",
        "events {}\nhttp {\n    server {\n        listen 127.0.0.1:1;\n"
        "        proxy_buffering maybe;\n    }\n}\n",
    )
    result = run(rproxyCommand(prefix, "-t", "-c", "bad.conf"), prefix)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f'rproxy: [emerg] invalid value "maybe" in "proxy_buffering" directive, '
        f'it must be "on" or "off" in {conf}:5',
        f"rproxy: configuration file {conf} test failed",
    ]


def testBadConfigDoesNotStart(prefix: Path) -> None:
    """
    Started (not tested) on a bad config, it exits 1 with the error.
    """
    conf = write(prefix / "bad.conf", "events {}\nhttp {\n    bogus;\n}\n")
    result = run(rproxyCommand(prefix, "-c", "bad.conf", "-g", "daemon off;"), prefix)
    assert result.returncode == 1
    assert f'rproxy: [emerg] unknown directive "bogus" in {conf}:3' in result.stderr


def testDump(prefix: Path) -> None:
    """
    C{-T} tests, then writes every config file (includes too) to stdout
    under nginx's C{# configuration file} headers.
    """
    port = freePort()
    main = write(
        prefix / "nginx.conf",
        "events {}\nhttp {\n    access_log off;\n    include sites/*.conf;\n}\n",
    )
    (prefix / "sites").mkdir()
    site = write(
        prefix / "sites" / "a.conf",
        f"server {{ listen 127.0.0.1:{port}; location / {{ return 200 a; }} }}\n",
    )
    result = run(rproxyCommand(prefix, "-T", "-c", "nginx.conf"), prefix)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert result.stdout == (
        f"# configuration file {main}:\n{main.read_text()}\n"
        f"# configuration file {site}:\n{site.read_text()}\n"
    )


def testVersion(prefix: Path) -> None:
    """
    C{-v} prints the version on stderr; C{-V} adds what it runs on.
    """
    from twisted_rproxy._version import __version__

    result = run(rproxyCommand(prefix, "-v"), prefix)
    assert result.returncode == 0
    assert result.stderr == f"rproxy: version: twisted_rproxy/{__version__}\n"
    result = run(rproxyCommand(prefix, "-V"), prefix)
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert lines[0] == f"rproxy: version: twisted_rproxy/{__version__}"
    assert "Twisted" in lines[1] and "Python" in lines[1]


@pytest.fixture
def rproxyScript() -> str:
    """
    The installed C{rproxy} console script (what C{pip install} puts on
    PATH); skipped where it is not installed, as in a bare checkout.
    """
    script = shutil.which("rproxy")
    if script is None:
        pytest.skip("no rproxy console script on PATH (pip install . puts it there)")
    return script


def testConsoleScriptTestGoodConfig(rproxyScript: str, prefix: Path) -> None:
    """
    The installed C{rproxy} script, not just C{python -m twisted_rproxy}:
    C{rproxy -t -c CONF} exits 0 with nginx's "syntax is ok" and "test is
    successful" lines, so the entry point in setup.cfg is wired to the
    same CLI.  (This checkout's package comes first on PYTHONPATH, so the
    script runs the code under test.)
    """
    conf = write(prefix / "good.conf", proxyConfig(freePort(), "location / { return 200 ok; }"))
    result = run([rproxyScript, "-p", str(prefix), "-t", "-c", str(conf)], prefix)
    assert result.returncode == 0, result.stderr
    assert f"rproxy: the configuration file {conf} syntax is ok\n" in result.stderr
    assert f"rproxy: configuration file {conf} test is successful\n" in result.stderr


def testConsoleScriptTestBadConfig(rproxyScript: str, prefix: Path) -> None:
    """
    The installed C{rproxy -t} on a broken config exits non-zero, naming
    the error at FILE:LINE, then says the test failed.
    """
    conf = write(
        prefix / "bad.conf",
        "events {}\nhttp {\n    server {\n        listen 127.0.0.1:1;\n"
        "        no_such_directive on;\n    }\n}\n",
    )
    result = run([rproxyScript, "-p", str(prefix), "-t", "-c", str(conf)], prefix)
    assert result.returncode != 0
    assert f'unknown directive "no_such_directive" in {conf}:5' in result.stderr
    assert f"rproxy: configuration file {conf} test failed" in result.stderr


def testSignalWithoutPidFile(prefix: Path) -> None:
    """
    C{-s} with no running instance fails saying which pid file it read.
    """
    write(prefix / "nginx.conf", proxyConfig(freePort(), "location / { return 200 ok; }"))
    result = run(rproxyCommand(prefix, "-c", "nginx.conf", "-s", "reload"), prefix)
    assert result.returncode == 1
    assert f'open() "{prefix}/logs/rproxy.pid" failed' in result.stderr


# ---------------------------------------------------------------------------
# -e: the error log
# ---------------------------------------------------------------------------


class ErrorLogFlagRunner(RproxyRunner):
    """
    C{rproxy} started with C{-e PATH}: the error log nginx's flag names,
    for configs without an C{error_log} directive.
    """

    label = "rproxy-e"

    def __init__(self, confText: str, errorLog: str, **kwargs: Any) -> None:
        """Remember the C{-e} argument (absolute, or relative to the prefix)."""
        super().__init__(confText, **kwargs)
        self.errorLogArgument = errorLog

    @property
    def errorLogPath(self) -> Path:
        """Where C{-e} says the log goes: relative paths are in the prefix."""
        return self.prefix / self.errorLogArgument

    def command(self) -> List[str]:
        """The usual foreground command with C{-e PATH} added."""
        return super().command() + ["-e", self.errorLogArgument]


@pytest.mark.parametrize("where", ["absolute", "relative"])
def testErrorLogFlag(where: str, deadPort: int, tmp_path: Path) -> None:
    """
    C{rproxy -e FILE} sends the error log to FILE (an absolute path
    outside the prefix, or one relative to the prefix as nginx resolves
    it) when the config names no C{error_log}: a 502's C{[error]} line
    lands there, and none of it goes to the default C{logs/error.log}.
    """
    errorLog = str(tmp_path / "elsewhere.log") if where == "absolute" else "logs/custom-error.log"
    port = freePort()
    runner = ErrorLogFlagRunner(
        proxyConfig(port, f"location / {{ proxy_pass http://127.0.0.1:{deadPort}; }}"), errorLog
    )
    try:
        runner.start()
        assert request(port, path="/to-the-e-log").status == 502
        line = waitFor(
            lambda: re.search(r".*\[error\].*connect\(\) failed.*", runner.errorLog),
            "the 502 in the -e log",
        ).group(0)
        assert 'request: "GET /to-the-e-log HTTP/1.1"' in line
        default = runner.prefix / "logs" / "error.log"
        assert not default.exists() or "to-the-e-log" not in default.read_text()
    finally:
        runner.cleanup()


# ---------------------------------------------------------------------------
# running: pid file and signals
# ---------------------------------------------------------------------------


class Running:
    """
    One C{rproxy} started in the foreground by the runner fixture, with
    helpers to send it nginx's C{-s} commands.
    """

    def __init__(self, runner: RproxyRunner) -> None:
        """Wrap a started runner."""
        self.runner = runner
        self.prefix = runner.prefix
        self.pidPath = runner.prefix / "logs" / "custom.pid"

    def signal(self, name: str) -> None:
        """Run C{rproxy -p PREFIX -c CONF -s NAME}, which must succeed."""
        result = run(
            rproxyCommand(self.prefix, "-c", str(self.runner.confPath), "-g", "daemon off;", "-s", name),
            self.prefix,
        )
        assert result.returncode == 0, result.stderr

    def rewrite(self, text: str) -> None:
        """Replace the config file."""
        self.runner.confPath.write_text(text, encoding="utf-8")


def startRunning(rproxyRunner: Any, text: str) -> Running:
    """Start rproxy on C{text}; check its pid file names it."""
    running = Running(rproxyRunner(text))
    pid = waitFor(lambda: running.pidPath.exists() and running.pidPath.read_text(), "the pid file")
    assert int(pid) == running.runner.process.pid
    return running


def testPidFileAndQuit(backend: Any, rproxyRunner: Any) -> None:
    """
    Running in the foreground writes the C{pid} directive's file; C{-s
    quit} stops it gracefully (exit 0) and removes the file.
    """
    port = freePort()
    running = startRunning(
        rproxyRunner, versionConfig(port, "v1", backend, mainExtra="pid logs/custom.pid;")
    )
    assert configVersion(port) == "v1"
    running.signal("quit")
    waitFor(lambda: not running.runner.isRunning(), "rproxy to exit")
    assert running.runner.stop() == 0
    assert not running.pidPath.exists()
    assert not portAccepts(port)


def testStop(backend: Any, rproxyRunner: Any) -> None:
    """
    C{-s stop} stops it at once and removes the pid file.
    """
    port = freePort()
    running = startRunning(
        rproxyRunner, versionConfig(port, "v1", backend, mainExtra="pid logs/custom.pid;")
    )
    running.signal("stop")
    waitFor(lambda: not running.runner.isRunning(), "rproxy to exit")
    assert running.runner.stop() == 0
    assert not running.pidPath.exists()


def testReload(backend: Any, rproxyRunner: Any) -> None:
    """
    C{-s reload} after editing the config changes what new requests get,
    with the listening socket never closed (every request meanwhile
    succeeds) and a connection opened before the reload still on the old
    config.
    """
    port = freePort()
    main = "pid logs/custom.pid;"
    running = startRunning(rproxyRunner, versionConfig(port, "v1", backend, mainExtra=main))
    assert (configVersion(port), backendSawVersion(port)) == ("v1", "v1")
    socketBefore = listeningInode(port)
    assert socketBefore is not None or not os.path.exists("/proc/net/tcp")
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    kept.request("GET", "/version", headers={"Host": "localhost"})
    assert kept.getresponse().read() == b"v1"

    running.rewrite(versionConfig(port, "v2", backend, mainExtra=main))
    running.signal("reload")
    waitFor(lambda: configVersion(port) == "v2", "the new config to answer")
    assert backendSawVersion(port) == "v2"
    assert listeningInode(port) == socketBefore  # the very same socket

    kept.request("GET", "/version", headers={"Host": "localhost"})
    assert kept.getresponse().read() == b"v1"
    kept.close()
    assert running.runner.isRunning()
    assert "configuration reloaded" in running.runner.stderr


def testReloadAddsAndDropsListeners(backend: Any, rproxyRunner: Any) -> None:
    """
    A reload that moves a server to another port starts the new listener
    and stops the old one.
    """
    first, second = freePort(), freePort()
    main = "pid logs/custom.pid;"
    running = startRunning(rproxyRunner, versionConfig(first, "v1", backend, mainExtra=main))
    running.rewrite(versionConfig(second, "v2", backend, mainExtra=main))
    running.signal("reload")
    waitFor(lambda: portAccepts(second), "the new listener")
    assert configVersion(second) == "v2"
    waitFor(lambda: not portAccepts(first), "the old listener to close")


def testBrokenReloadKeepsRunning(backend: Any, rproxyRunner: Any) -> None:
    """
    SIGHUP with a broken config logs the error (file:line) and keeps
    serving the old config.  (C{-s reload} itself refuses to send then,
    since it reads the config first, as nginx does.)
    """
    port = freePort()
    main = "pid logs/custom.pid;"
    running = startRunning(rproxyRunner, versionConfig(port, "v1", backend, mainExtra=main))
    broken = versionConfig(port, "v2", backend, mainExtra=main).replace(
        "location = /version", "bogus_directive on;\n        location = /version"
    )
    running.rewrite(broken)
    line = broken.splitlines().index("        bogus_directive on;") + 1

    refused = run(
        rproxyCommand(running.prefix, "-c", str(running.runner.confPath), "-s", "reload"),
        running.prefix,
    )
    assert refused.returncode == 1
    assert f"in {running.runner.confPath}:{line}" in refused.stderr

    os.kill(running.runner.process.pid, signal.SIGHUP)
    logged = waitFor(
        lambda: re.search(r"\[error\] \d+#\d+: reload failed.*", running.runner.errorLog),
        "the reload error in the error log",
    )
    assert f'unknown directive "bogus_directive" in {running.runner.confPath}:{line}' in logged.group(0)
    assert configVersion(port) == "v1"
    assert backendSawVersion(port) == "v1"


def testReloadWithBusyPortKeepsRunning(backend: Any, rproxyRunner: Any) -> None:
    """
    A reload whose new listen address is taken logs the error and leaves
    the running config whole: the old listener and version stay.
    """
    import socket

    port = freePort()
    main = "pid logs/custom.pid;"
    running = startRunning(rproxyRunner, versionConfig(port, "v1", backend, mainExtra=main))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        busy = holder.getsockname()[1]
        both = versionConfig(port, "v2", backend, mainExtra=main).replace(
            f"listen 127.0.0.1:{port};", f"listen 127.0.0.1:{port};\n        listen 127.0.0.1:{busy};"
        )
        running.rewrite(both)
        running.signal("reload")
        waitFor(lambda: "reload failed" in running.runner.errorLog, "the reload error")
    assert configVersion(port) == "v1"
    assert backendSawVersion(port) == "v1"
    assert running.runner.isRunning()


def testReopen(rproxyRunner: Any) -> None:
    """
    After the access log is renamed (rotation), C{-s reopen} makes new
    lines go to a new file at the configured path.
    """
    port = freePort()
    running = startRunning(
        rproxyRunner,
        proxyConfig(port, "location / { return 200 ok; }", mainExtra="pid logs/custom.pid;"),
    )
    log = running.prefix / "logs" / "access.log"
    request(port, path="/before")
    waitFor(lambda: "/before" in log.read_text(), "the first access log line")
    log.rename(log.with_name("access.log.1"))
    running.signal("reopen")

    def reopened() -> bool:
        request(port, path="/after")
        return log.exists() and "/after" in log.read_text()

    waitFor(reopened, "a line in the reopened access log")
    assert "/before" in log.with_name("access.log.1").read_text()
    assert "/before" not in log.read_text()


def testDaemon(prefix: Path) -> None:
    """
    With C{daemon on} (the default) the command returns at once and the
    pid file names the detached daemon, which serves until C{-s stop}.
    """
    port = freePort()
    write(prefix / "nginx.conf", proxyConfig(port, 'location / { return 200 "daemon"; }'))
    pidPath = prefix / "logs" / "rproxy.pid"
    started = run(rproxyCommand(prefix, "-c", "nginx.conf"), prefix)
    daemon = None
    try:
        assert started.returncode == 0, started.stderr
        daemon = int(waitFor(lambda: pidPath.exists() and pidPath.read_text(), "the pid file"))
        assert daemon != os.getpid()
        waitFor(lambda: portAccepts(port), "the daemon to listen")
        assert request(port).body == b"daemon"
        assert os.getsid(daemon) != os.getsid(0)  # detached into its own session
        stopped = run(rproxyCommand(prefix, "-c", "nginx.conf", "-s", "stop"), prefix)
        assert stopped.returncode == 0, stopped.stderr
        waitFor(lambda: not pidPath.exists(), "the daemon to remove its pid file")
        waitFor(lambda: not _alive(daemon), "the daemon to exit")
    finally:
        if daemon is not None and _alive(daemon):
            os.kill(daemon, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether a process (not our child) still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return True


def testPortInUseReported(rproxyRunner: Any) -> None:
    """
    A listen address already taken is reported at start-up with exit 1,
    before detaching, as nginx does.
    """
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        runner = rproxyRunner(proxyConfig(port, "location / { return 200 x; }"), start=False)
        assert runner.runToExit() == 1
        assert "rproxy: [emerg]" in runner.stderr
        assert str(port) in runner.stderr


# ---------------------------------------------------------------------------
# twistd rproxy
# ---------------------------------------------------------------------------


def twistd(*args: str) -> List[str]:
    """
    @return: the argv of C{twistd ARGS} with this interpreter.
    """
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args]


def testTwistdTestBadConfig(prefix: Path) -> None:
    """
    C{twistd -n rproxy --test --config bad.conf} exits non-zero with the
    error at file:line.
    """
    conf = write(prefix / "bad.conf", "events {}\nhttp {\n  server {\n    listen 1.2.3.4:99999;\n  }\n}\n")
    result = run(twistd("-n", "--pidfile=", "rproxy", "--test", "--config", str(conf)), prefix)
    assert result.returncode != 0
    assert f'invalid port in "1.2.3.4:99999" of the "listen" directive in {conf}:4' in result.stderr
    assert f"configuration file {conf} test failed" in result.stderr


def testTwistdTestGoodConfig(prefix: Path) -> None:
    """
    C{--test} on a good config exits 0 saying so.
    """
    conf = write(prefix / "good.conf", proxyConfig(freePort(), "location / { return 200 ok; }"))
    result = run(twistd("-n", "--pidfile=", "rproxy", "--test", "--config", str(conf)), prefix)
    assert result.returncode == 0, result.stderr
    assert f"configuration file {conf} test is successful" in result.stderr


class TwistdRunner(RproxyRunner):
    """
    C{twistd -n rproxy [ARGS]} in the runner's prefix.
    """

    label = "twistd"

    def __init__(self, confText: str, twistdArgs: List[str], twistdOptions: Sequence[str] = (),
                 **kwargs: Any) -> None:
        """Remember the rproxy subcommand's arguments, and twistd's own."""
        super().__init__(confText, **kwargs)
        self.twistdArgs = twistdArgs
        self.twistdOptions = list(twistdOptions)

    def command(self) -> List[str]:
        """twistd [OPTIONS] -n --pidfile= rproxy ARGS."""
        return twistd(*self.twistdOptions, "-n", "--pidfile=", "rproxy", *self.twistdArgs)


def testTwistdServesConfig(backend: Any) -> None:
    """
    C{twistd -n rproxy --config FILE} serves that config.
    """
    port = freePort()
    runner = TwistdRunner(versionConfig(port, "tw", backend), [])
    runner.twistdArgs = ["--config", str(runner.confPath)]
    try:
        runner.start()
        assert configVersion(port) == "tw"
        assert backendSawVersion(port) == "tw"
    finally:
        runner.cleanup()


def testTwistdOnTheProxyReactor(backend: Any) -> None:
    """
    C{twistd -r rproxy-epoll rproxy --config FILE} serves on the reactor
    the C{rproxy} command uses, found through Twisted's reactor plugins.
    """
    port = freePort()
    runner = TwistdRunner(versionConfig(port, "tr", backend), [], ["-r", "rproxy-epoll"])
    runner.twistdArgs = ["--config", str(runner.confPath)]
    try:
        runner.start()
        assert configVersion(port) == "tr"
        assert backendSawVersion(port) == "tr"
        assert "twisted_rproxy.reactor.ProxyEPollReactor" in runner.stdout + runner.stderr
    finally:
        runner.cleanup()


def testTwistdDemo() -> None:
    """
    C{twistd -n rproxy} with no config serves the embedded demo on
    127.0.0.1:8080, proxying to its own backend on 8081.
    """
    if portAccepts(8080) or portAccepts(8081):
        pytest.skip("ports 8080/8081 are in use")
    runner = TwistdRunner("", [], addresses=[("127.0.0.1", 8080), ("127.0.0.1", 8081)])
    try:
        try:
            runner.start()
        except StartupError as e:
            if "Address already in use" in str(e) or "address already in use" in str(e):
                pytest.skip("ports 8080/8081 were taken meanwhile")
            raise
        response = request(8080, path="/", host="127.0.0.1")
        assert response.status == 200
        assert response.header("X-Proxied-By") == "twisted_rproxy"
        document = response.json()
        assert document["message"] == "Hello from the twisted_rproxy demo backend"
        assert document["headers"]["X-Forwarded-For"] == ["127.0.0.1"]
        health = request(8080, path="/health", host="127.0.0.1")
        assert (health.status, health.body) == (200, b"ok\n")
    finally:
        runner.cleanup()


def testJITTraceLimitRaisedOnPyPy() -> None:
    """
    C{raiseJITTraceLimit}, which C{rproxy} calls at start-up, sets PyPy's
    JIT trace limit to a value PyPy accepts (it raises past its ceiling)
    and does nothing on CPython.
    """
    code = (
        "import platform\n"
        "from twisted_rproxy.cli import raiseJITTraceLimit\n"
        "print(platform.python_implementation(), raiseJITTraceLimit())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60, cwd=str(REPO_ROOT), env=_subprocessEnv())
    assert result.stdout.split() == [
        platform.python_implementation(), str(platform.python_implementation() == "PyPy")
    ], result.stderr


def testStartupObjectsFrozen() -> None:
    """
    C{freezeStartupObjects}, which C{rproxy} calls once its reactor runs,
    moves the objects start-up made out of the cyclic collector's
    generations on CPython (fewer objects for each full collection to
    walk) and does nothing on PyPy, whose collector has no C{freeze}.
    """
    code = (
        "import gc, platform\n"
        "from twisted_rproxy.cli import freezeStartupObjects\n"
        "before = gc.get_freeze_count() if hasattr(gc, 'get_freeze_count') else 0\n"
        "frozen = freezeStartupObjects()\n"
        "after = gc.get_freeze_count() if hasattr(gc, 'get_freeze_count') else 0\n"
        "print(platform.python_implementation(), frozen, before, after)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60, cwd=str(REPO_ROOT), env=_subprocessEnv())
    implementation, frozen, before, after = result.stdout.split()
    if implementation == "CPython":
        assert (frozen, before) == ("True", "0")
        assert int(after) > 10000, after  # Twisted and the proxy's modules at least
    else:
        assert (frozen, after) == ("False", "0")
