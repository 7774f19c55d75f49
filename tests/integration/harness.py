"""
Helpers for integration tests that run real processes: the test backend,
nginx and twisted_rproxy, each started from the same nginx.conf text, plus
tiny HTTP clients (http.client and raw sockets) to talk to them.

Everything waits by polling with a deadline (never a fixed sleep) and every
process is started in its own process group so it can be killed, with all its
children (nginx workers), however a test ends.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout, so subprocesses import this tree's packages."""

DEFAULT_START_TIMEOUT = 10.0
"""How long a server may take to accept connections before it counts as failed."""

DEFAULT_STOP_TIMEOUT = 10.0
"""How long a server may take to exit on SIGTERM before it is SIGKILLed."""

HeadersArg = Union[Mapping[str, str], Sequence[Tuple[str, str]], None]
"""Request headers: a mapping, or a list of pairs when a name repeats."""

BodyArg = Union[bytes, str, Sequence[bytes], None]
"""A request body: bytes (sent with Content-Length) or a list of byte chunks
(sent with Transfer-Encoding: chunked, one HTTP chunk per item)."""

_liveProcesses: Set[subprocess.Popen] = set()  # type: ignore[type-arg]
"""Every child still running, so an interpreter exit cannot leave one behind."""


def _killGroup(process: "subprocess.Popen[bytes]", sig: int) -> None:
    """Signal a child's whole process group (nginx workers included)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killAllAtExit() -> None:
    """Last resort: SIGKILL whatever the fixtures did not stop."""
    for process in list(_liveProcesses):
        _terminate(process, signal.SIGKILL, timeout=5)


atexit.register(_killAllAtExit)


def _parentDeathSignal(sig: int) -> Optional[Any]:
    """
    A preexec function asking Linux to send C{sig} to the child if the test
    process dies, so even a killed pytest leaves no server behind.  Servers
    get SIGTERM, not SIGKILL: nginx's master then takes its workers down
    with it, where a SIGKILLed master would orphan them.
    """
    if not sys.platform.startswith("linux"):
        return None

    def setDeathSignal() -> None:
        """Runs in the child between fork and exec."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            prSetPdeathsig = 1
            libc.prctl(prSetPdeathsig, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    return setDeathSignal


def _spawn(
    command: Sequence[str],
    cwd: Path,
    stdoutPath: Path,
    stderrPath: Path,
    env: Optional[Dict[str, str]] = None,
    deathSignal: int = signal.SIGTERM,
) -> "subprocess.Popen[bytes]":
    """
    Start a child in its own session with output in files (pipes nobody reads
    would fill up and hang the child), and track it until it is reaped.
    """
    with open(stdoutPath, "wb") as out, open(stderrPath, "wb") as err:
        process = subprocess.Popen(
            list(command),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
            preexec_fn=_parentDeathSignal(deathSignal),
        )
    _liveProcesses.add(process)
    return process


def _exited(process: "subprocess.Popen[bytes]") -> bool:
    """
    Whether a child has exited, without reaping it: while its zombie exists
    its pid (and so its process-group id) cannot be reused, which makes the
    final group-wide SIGKILL in L{_terminate} safe.
    """
    if process.returncode is not None:
        return True
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return process.poll() is not None
    try:
        result = waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    except ChildProcessError:
        return process.poll() is not None
    return result is not None


def _waitExited(process: "subprocess.Popen[bytes]", timeout: float) -> bool:
    """Poll L{_exited} until it is true or C{timeout} seconds pass."""
    deadline = time.monotonic() + timeout
    while not _exited(process):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _terminate(
    process: "subprocess.Popen[bytes]",
    sig: int = signal.SIGTERM,
    timeout: float = DEFAULT_STOP_TIMEOUT,
) -> Optional[int]:
    """
    Stop a child politely, then by force; always reap it and anything left in
    its process group.  Returns its exit status.
    """
    if process.returncode is None:
        if not _exited(process):
            try:
                process.send_signal(sig)
            except ProcessLookupError:
                pass
            if not _waitExited(process, timeout):
                _killGroup(process, signal.SIGKILL)
                _waitExited(process, timeout)
        # Workers or helpers that outlived their parent go too; the leader is
        # not reaped yet, so the group id still belongs to our child.
        _killGroup(process, signal.SIGKILL)
        process.wait()
    _liveProcesses.discard(process)
    return process.returncode


def _readText(path: Path) -> str:
    """A log file's text, or "" when it was never written."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text: str, lines: int = 40) -> str:
    """The end of a log, enough to explain a failure without flooding."""
    return "\n".join(text.splitlines()[-lines:])


def _subprocessEnv() -> Dict[str, str]:
    """The environment for Python children: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


# Every port freePort has handed out in this process: the kernel may give
# the same free port to two binds in a row (the first was closed), and a test
# that asks for two ports, say a plain and a TLS listener, must get two.
_portsHandedOut: Set[int] = set()


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's
    choice, so parallel runs do not collide), and that this process has not
    been given before.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _portsHandedOut:
            break
    if len(_portsHandedOut) > 16384:
        # Nearly the whole ephemeral range: start again rather than loop.
        _portsHandedOut.clear()
    _portsHandedOut.add(port)
    return port


def portAccepts(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True


def waitUntil(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> Any:
    """
    Poll C{predicate} until it returns something true, and return that;
    fail with C{what} if C{timeout} passes first (a safety net for an
    event, never a measured wait).
    """
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class StartupError(Exception):
    """
    A server did not come up: it exited, or never accepted connections in
    time.  The message carries its exit status, stderr and error log so the
    test output says why.
    """


def _spawnListening(command: List[str], directory: Path, what: str,
                    timeout: float) -> Tuple[Any, int]:
    """
    Run one of the test servers (C{command}, logging to C{directory}) and
    wait for the C{LISTENING <port>} line it prints once it accepts.

    @return: the process and the port it listens on.
    @raise StartupError: it exited or said nothing in time, with its
        stderr.
    """
    stdoutPath = directory / "stdout.log"
    process = _spawn(
        command, REPO_ROOT, stdoutPath, directory / "stderr.log",
        env=_subprocessEnv(), deathSignal=signal.SIGKILL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"LISTENING (\d+)", _readText(stdoutPath))
        if match:
            return process, int(match.group(1))
        if _exited(process):
            break
        time.sleep(0.02)
    returncode = _terminate(process, signal.SIGTERM, timeout=5)
    raise StartupError(
        f"{what} did not start (exit status {returncode}):\n"
        + _readText(directory / "stderr.log")
    )


def listenAddresses(confText: str) -> List[Tuple[str, int]]:
    """
    The (host, port) pairs of a config's C{listen} directives, so a runner
    knows what to wait for.  Unix sockets are skipped; a bare port or
    wildcard is checked on 127.0.0.1.
    """
    addresses: List[Tuple[str, int]] = []
    for match in re.finditer(r"(?m)^\s*listen\s+([^;\s]+)", confText):
        spec = match.group(1)
        if spec.startswith("unix:"):
            continue
        if spec.isdigit():
            addresses.append(("127.0.0.1", int(spec)))
            continue
        hostPart, _, portPart = spec.rpartition(":")
        if not portPart.isdigit():
            # "listen 127.0.0.1;" means port 80: not something tests use.
            continue
        host = hostPart.strip("[]")
        if host in ("", "*", "0.0.0.0", "localhost"):
            host = "127.0.0.1"
        if host == "::":
            host = "::1"
        addresses.append((host, int(portPart)))
    return addresses


NGINX_PREFIX_PATHS = """\
    access_log logs/access.log;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
"""
"""The lines at the top of C{http} that keep nginx's log and temporary files
inside its prefix rather than in compiled-in system paths."""

NGINX_HTTP_HEAD = """
events {
}

http {
""" + NGINX_PREFIX_PATHS
"""
The start of a config nginx and twisted_rproxy both run, up to inside
C{http}: its logs and temp files stay inside the C{-p} prefix, so nginx
never needs /var/lib/nginx or /var/log/nginx.
"""


def proxyConfig(
    listenPort: int, body: str, httpExtra: str = "", mainExtra: str = ""
) -> str:
    """
    A complete nginx.conf that nginx and twisted_rproxy both accept: C{body}
    goes inside the single C{server} block, C{httpExtra} (e.g. an
    C{upstream} block) inside C{http}, C{mainExtra} at top level.  All paths
    are relative, so they resolve inside the C{-p} prefix and nginx never
    needs /var/lib/nginx or /var/log/nginx.
    """
    return mainExtra + NGINX_HTTP_HEAD + f"""{httpExtra}
    server {{
        listen 127.0.0.1:{listenPort};
{body}
    }}
}}
"""


class Backend:
    """
    The test backend (tests/integration/backend.py) as a subprocess: a real
    twisted.web server the proxies forward to, which reports what it got.
    """

    def __init__(
        self,
        name: str = "backend",
        unixPath: Optional[str] = None,
        startTimeout: float = DEFAULT_START_TIMEOUT,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """
        Prepare, but do not start, a backend called C{name}, to listen on
        C{host} (another loopback address such as 127.0.0.2 gives a second
        IP address for DNS tests) and C{port} (0: any free one).
        """
        self.name = name
        self.unixPath = unixPath
        self.startTimeout = startTimeout
        self.host = host
        self.directory = Path(tempfile.mkdtemp(prefix="rproxy-backend-"))
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.port = port

    @property
    def address(self) -> str:
        """C{HOST:PORT}, as written in proxy_pass and upstream blocks."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The backend's base URL, for talking to it directly."""
        return f"http://{self.address}"

    @property
    def stderr(self) -> str:
        """What the backend logged (warnings and tracebacks only)."""
        return _readText(self.directory / "stderr.log")

    def start(self) -> "Backend":
        """Run the backend and wait for its C{LISTENING <port>} line."""
        command = [
            sys.executable, "-m", "tests.integration.backend",
            "--port", str(self.port), "--name", self.name, "--host", self.host,
        ]
        if self.unixPath:
            command += ["--unix", self.unixPath]
        self.process, self.port = _spawnListening(
            command, self.directory, "backend", self.startTimeout)
        return self

    def stop(self) -> None:
        """Kill the backend (it holds no state worth a graceful stop)."""
        if self.process is not None:
            _terminate(self.process, signal.SIGTERM, timeout=5)

    def cleanup(self) -> None:
        """Stop and remove the backend's log directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "Backend":
        """Start on entering a C{with} block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Always clean up on leaving a C{with} block."""
        self.cleanup()


@contextlib.contextmanager
def namedBackends(names: str = "abc") -> Iterator[List[Backend]]:
    """
    Start one L{Backend} per letter of C{names}, each answering with its
    own name, and stop them all on the way out (even if one fails to
    start), for tests that spread requests over several peers.
    """
    started: List[Backend] = []
    try:
        for name in names:
            started.append(Backend(name=name).start())
        yield started
    finally:
        for backend in started:
            backend.cleanup()


class DNSServer:
    """
    The test DNS server (tests/integration/dnsserver.py) as a subprocess:
    twisted.names answering A queries from a records file that L{setRecords}
    rewrites while it runs.
    """

    def __init__(self, records: Dict[str, List[str]], ttl: int = 1) -> None:
        """Prepare, but do not start, a server answering C{records}."""
        self.directory = Path(tempfile.mkdtemp(prefix="rproxy-dns-"))
        self.recordsPath = self.directory / "records.json"
        self.ttl = ttl
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.port = 0
        self.setRecords(records)

    def setRecords(self, records: Dict[str, List[str]]) -> None:
        """
        Answer C{records} (name to IPv4 addresses) from the next query on,
        replacing the file whole so no query reads half of it.
        """
        temporary = self.recordsPath.with_suffix(".tmp")
        temporary.write_text(json.dumps(records), encoding="utf-8")
        os.replace(temporary, self.recordsPath)

    def queries(self) -> List[str]:
        """@return: the queries answered so far, as C{"TYPE name"}."""
        return _readText(Path(str(self.recordsPath) + ".queries")).splitlines()

    def start(self) -> "DNSServer":
        """Run the server and wait for its C{LISTENING <port>} line."""
        command = [
            sys.executable, "-m", "tests.integration.dnsserver",
            "--records", str(self.recordsPath), "--ttl", str(self.ttl),
        ]
        self.process, self.port = _spawnListening(
            command, self.directory, "DNS server", DEFAULT_START_TIMEOUT)
        return self

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        if self.process is not None:
            _terminate(self.process, signal.SIGTERM, timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "DNSServer":
        """Start on entering a C{with} block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Always clean up on leaving a C{with} block."""
        self.cleanup()


class ServerRunner:
    """
    One nginx-compatible server run from config text in a fresh prefix
    directory: start it, wait until every C{listen} port accepts, expose its
    logs, stop it.  Subclasses say how to invoke nginx or twisted_rproxy.

    @ivar returncode: the exit status once it has exited, else C{None}.
    """

    label = "server"

    def __init__(
        self,
        confText: str,
        addresses: Optional[Sequence[Tuple[str, int]]] = None,
        startTimeout: float = DEFAULT_START_TIMEOUT,
        stopTimeout: float = DEFAULT_STOP_TIMEOUT,
        keepPrefix: bool = False,
    ) -> None:
        """Write C{confText} as PREFIX/nginx.conf, ready to start."""
        self.confText = confText
        self.prefix = Path(tempfile.mkdtemp(prefix=f"rproxy-{self.label}-"))
        (self.prefix / "logs").mkdir()
        self.confPath = self.prefix / "nginx.conf"
        self.confPath.write_text(confText, encoding="utf-8")
        self.addresses = list(addresses) if addresses else listenAddresses(confText)
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
        self.keepPrefix = keepPrefix or bool(os.environ.get("RPROXY_KEEP_PREFIX"))
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.returncode: Optional[int] = None

    # What subclasses define.

    def command(self) -> List[str]:
        """The argv that runs this server in the foreground."""
        raise NotImplementedError

    @property
    def errorLogPath(self) -> Path:
        """Where this server writes its error log."""
        raise NotImplementedError

    def environment(self) -> Optional[Dict[str, str]]:
        """The child's environment; C{None} inherits ours."""
        return None

    # Shared behaviour.

    @property
    def port(self) -> int:
        """The first listen port: the one most tests talk to."""
        return self.addresses[0][1]

    @property
    def stderr(self) -> str:
        """Everything the server wrote to stderr (start-up errors go here)."""
        return _readText(self.prefix / "stderr.log")

    @property
    def stdout(self) -> str:
        """Everything the server wrote to stdout."""
        return _readText(self.prefix / "stdout.log")

    @property
    def errorLog(self) -> str:
        """The error log's text so far."""
        return _readText(self.errorLogPath)

    @property
    def accessLog(self) -> str:
        """The access log's text so far (at the path proxyConfig uses)."""
        return _readText(self.prefix / "logs" / "access.log")

    def describe(self) -> str:
        """Status, stderr and error log tails: what a failing test should show."""
        return (
            f"{self.label} {' '.join(self.command())}\n"
            f"exit status: {self.returncode}\n"
            f"--- stderr ---\n{_tail(self.stderr)}\n"
            f"--- error log ({self.errorLogPath}) ---\n{_tail(self.errorLog)}"
        )

    def _launch(self) -> "subprocess.Popen[bytes]":
        """Spawn the server process with output captured in the prefix."""
        if self.process is not None:
            raise RuntimeError(f"{self.label} already started")
        self.process = _spawn(
            self.command(), self.prefix, self.prefix / "stdout.log",
            self.prefix / "stderr.log", env=self.environment(),
        )
        return self.process

    def start(self) -> "ServerRunner":
        """
        Run the server and return once all its listen ports accept; raise
        L{StartupError} (after killing it) if it exits or is not ready
        within C{startTimeout} seconds.
        """
        busy = [a for a in self.addresses if portAccepts(a[1], a[0])]
        if busy:
            raise StartupError(f"{self.label}: address already in use: {busy}")
        process = self._launch()
        deadline = time.monotonic() + self.startTimeout
        pending = list(self.addresses)
        while True:
            pending = [a for a in pending if not portAccepts(a[1], a[0])]
            if not pending and not _exited(process):
                return self
            if _exited(process):
                self.returncode = _terminate(process)
                raise StartupError(f"{self.label} exited during start-up\n"
                                   + self.describe())
            if time.monotonic() >= deadline:
                self.returncode = _terminate(process, signal.SIGKILL, timeout=5)
                raise StartupError(
                    f"{self.label} did not accept connections on {pending} "
                    f"within {self.startTimeout:g}s\n" + self.describe()
                )
            time.sleep(0.02)

    def runToExit(self, timeout: Optional[float] = None) -> int:
        """
        Run the server expecting it to exit by itself (e.g. on a config
        error) and return its exit status; kill it and raise L{StartupError}
        if it is still running after C{timeout} (default C{startTimeout}).
        """
        process = self._launch()
        if not _waitExited(process, timeout or self.startTimeout):
            self.returncode = _terminate(process, signal.SIGKILL, timeout=5)
            raise StartupError(f"{self.label} kept running\n" + self.describe())
        self.returncode = _terminate(process)
        assert self.returncode is not None
        return self.returncode

    def isRunning(self) -> bool:
        """Whether the server process is still alive."""
        return self.process is not None and not _exited(self.process)

    def stop(self, sig: int = signal.SIGTERM) -> Optional[int]:
        """
        Stop the server (SIGTERM: fast shutdown, not waiting for stalled
        requests), SIGKILL it if it lingers, and return its exit status.
        """
        if self.process is not None:
            self.returncode = _terminate(self.process, sig, self.stopTimeout)
        return self.returncode

    def cleanup(self) -> None:
        """Stop and delete the prefix (kept if RPROXY_KEEP_PREFIX is set)."""
        self.stop()
        if not self.keepPrefix:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> "ServerRunner":
        """Start on entering a C{with} block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Always clean up on leaving a C{with} block."""
        self.cleanup()


def _hasDirective(confText: str, name: str) -> bool:
    """Whether a main-context-only directive appears in the config text."""
    return re.search(rf"(?m)^\s*{name}\s", confText) is not None


def findNginx() -> Optional[str]:
    """
    The nginx binary: $NGINX, else PATH, else the sbin directories a
    non-root PATH often lacks.
    """
    candidates = [os.environ.get("NGINX"), shutil.which("nginx")]
    candidates += ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class NginxRunner(ServerRunner):
    """
    The reference: real nginx on the same config text.  Run in the
    foreground with pid and error log inside the prefix.  As root, workers
    would drop to C{nobody}, which cannot enter the private temp prefix, so
    C{user root;} is added then (as non-root nginx ignores C{user} anyway,
    with a warning, so it is left out).
    """

    label = "nginx"

    def __init__(self, confText: str, binary: Optional[str] = None, **kwargs: Any) -> None:
        """Prepare nginx with C{binary} (found automatically by default)."""
        super().__init__(confText, **kwargs)
        found = binary or findNginx()
        if found is None:
            raise StartupError("nginx binary not found")
        self.binary = found

    @property
    def errorLogPath(self) -> Path:
        """PREFIX/error.log, as set by -e and -g."""
        return self.prefix / "error.log"

    def globalDirectives(self) -> str:
        """
        The -g text; directives already in the file are left out because
        nginx rejects duplicates ("pid" directive is duplicate).
        """
        directives = []
        if not _hasDirective(self.confText, "daemon"):
            directives.append("daemon off;")
        if not _hasDirective(self.confText, "pid"):
            directives.append(f"pid {self.prefix / 'nginx.pid'};")
        directives.append(f"error_log {self.errorLogPath};")
        if os.geteuid() == 0 and not _hasDirective(self.confText, "user"):
            directives.append("user root;")
        return " ".join(directives)

    def command(self) -> List[str]:
        """nginx -p PREFIX -e LOG -c CONF -g '...'; -e keeps start-up
        messages out of compiled-in paths like /var/log/nginx."""
        return [
            self.binary, "-p", f"{self.prefix}/", "-e", str(self.errorLogPath),
            "-c", str(self.confPath), "-g", self.globalDirectives(),
        ]


class RproxyRunner(ServerRunner):
    """
    The system under test: C{python -m twisted_rproxy} with nginx's flags, in
    the foreground, on the same config text nginx got.
    """

    label = "rproxy"

    @property
    def errorLogPath(self) -> Path:
        """PREFIX/logs/error.log, the default when the config names none."""
        return self.prefix / "logs" / "error.log"

    def environment(self) -> Optional[Dict[str, str]]:
        """This checkout's packages first, unbuffered output."""
        return _subprocessEnv()

    def command(self) -> List[str]:
        """python -m twisted_rproxy -p PREFIX -c CONF -g 'daemon off;'."""
        return [
            sys.executable, "-m", "twisted_rproxy", "-p", str(self.prefix),
            "-c", str(self.confPath), "-g", "daemon off;",
        ]


@dataclass
class Response:
    """
    What an HTTP client got: status, reason, headers in received order and
    case, and the body.
    """

    status: int
    reason: str
    headers: List[Tuple[str, str]]
    body: bytes

    def headerValues(self, name: str) -> List[str]:
        """Every value of a header, compared case-insensitively."""
        lowered = name.lower()
        return [v for n, v in self.headers if n.lower() == lowered]

    def header(self, name: str) -> Optional[str]:
        """The first value of a header, or C{None}."""
        values = self.headerValues(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON (the backend's echo)."""
        return json.loads(self.body)


def _headerPairs(headers: HeadersArg) -> List[Tuple[str, str]]:
    """Normalise the headers argument to a list of pairs."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(n, v) for n, v in headers]


def request(
    port: int,
    method: str = "GET",
    path: str = "/",
    headers: HeadersArg = None,
    body: BodyArg = None,
    host: Optional[str] = "localhost",
    timeout: float = 10.0,
    address: str = "127.0.0.1",
) -> Response:
    """
    One HTTP/1.1 request with http.client, sending only the headers given
    plus Host (C{host}, unless C{headers} has one or C{host} is None) and
    body framing: bytes get Content-Length, a list of chunks gets
    Transfer-Encoding: chunked.  No Accept-Encoding or User-Agent is added,
    so what reaches the backend is exactly what the test chose.
    """
    pairs = _headerPairs(headers)
    names = {n.lower() for n, _ in pairs}
    if host is not None and "host" not in names:
        pairs.insert(0, ("Host", host))
    if isinstance(body, str):
        body = body.encode("utf-8")
    encodeChunked = False
    if body is not None and not isinstance(body, (bytes, bytearray)):
        chunks = [bytes(c) for c in body]
        body = chunks  # type: ignore[assignment]
        if "transfer-encoding" not in names:
            pairs.append(("Transfer-Encoding", "chunked"))
        encodeChunked = True
    elif body is not None and "content-length" not in names and "transfer-encoding" not in names:
        pairs.append(("Content-Length", str(len(body))))
    elif body is None and method.upper() in ("POST", "PUT", "PATCH") and not (
        names & {"content-length", "transfer-encoding"}
    ):
        pairs.append(("Content-Length", "0"))

    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in pairs:
            connection.putheader(name, value)
        connection.endheaders(body, encode_chunked=encodeChunked)  # type: ignore[arg-type]
        response = connection.getresponse()
        responseBody = response.read()
        return Response(
            status=response.status,
            reason=response.reason,
            headers=list(response.getheaders()),
            body=responseBody,
        )
    finally:
        connection.close()


def rawExchange(
    port: int,
    data: bytes,
    timeout: float = 5.0,
    halfClose: bool = False,
    address: str = "127.0.0.1",
) -> bytes:
    """
    Send raw bytes and return everything read until the server closes or
    C{timeout} seconds pass, for requests http.client cannot express
    (pipelining, malformed requests).  C{halfClose} shuts our sending side
    afterwards; off by default because nginx treats it as a client abort.
    """
    deadline = time.monotonic() + timeout
    received: List[bytes] = []
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.sendall(data)
        if halfClose:
            sock.shutdown(socket.SHUT_WR)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            received.append(chunk)
    return b"".join(received)


@dataclass
class RawResponse:
    """
    One response parsed out of a raw byte stream; C{complete} is False when
    the bytes ended before the framing said the body would.
    """

    version: str
    status: int
    reason: str
    headers: List[Tuple[str, str]]
    body: bytes
    chunked: bool = False
    complete: bool = True
    raw: bytes = field(default=b"", repr=False)

    def headerValues(self, name: str) -> List[str]:
        """Every value of a header, compared case-insensitively."""
        lowered = name.lower()
        return [v for n, v in self.headers if n.lower() == lowered]

    def header(self, name: str) -> Optional[str]:
        """The first value of a header, or C{None}."""
        values = self.headerValues(name)
        return values[0] if values else None


def _decodeChunked(data: bytes, offset: int) -> Tuple[bytes, int, bool]:
    """Decode a chunked body at C{offset}: (body, end offset, complete)."""
    pieces: List[bytes] = []
    while True:
        lineEnd = data.find(b"\r\n", offset)
        if lineEnd < 0:
            return b"".join(pieces), len(data), False
        sizeText = data[offset:lineEnd].split(b";", 1)[0].strip()
        size = int(sizeText, 16)
        offset = lineEnd + 2
        if size == 0:
            # Skip trailers up to the empty line.
            while True:
                lineEnd = data.find(b"\r\n", offset)
                if lineEnd < 0:
                    return b"".join(pieces), len(data), False
                line = data[offset:lineEnd]
                offset = lineEnd + 2
                if not line:
                    return b"".join(pieces), offset, True
        if offset + size + 2 > len(data):
            pieces.append(data[offset:offset + size])
            return b"".join(pieces), len(data), False
        pieces.append(data[offset:offset + size])
        offset += size + 2


def readUntilClosed(conn: "ssl.SSLSocket") -> bytes:
    """
    @return: everything a TLS connection gives until the server closes it
        (a TLS close or a reset ends it too).
    """
    chunks: List[bytes] = []
    while True:
        try:
            chunk = conn.recv(65536)
        except (ssl.SSLZeroReturnError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parseRawResponses(
    data: bytes, headRequests: Iterable[bool] = ()
) -> List[RawResponse]:
    """
    Split a raw byte stream into responses using HTTP/1.1 framing (1xx,
    204 and 304 have no body; then chunked, Content-Length, or up to the
    end).  C{headRequests} flags, per final response in order, those that
    answered HEAD and so carry no body.  Raises ValueError on bytes that do
    not start with an HTTP status line.
    """
    heads = list(headRequests)
    responses: List[RawResponse] = []
    offset = 0
    finalIndex = 0
    while offset < len(data):
        headEnd = data.find(b"\r\n\r\n", offset)
        if headEnd < 0:
            raise ValueError(f"incomplete response head: {data[offset:offset + 200]!r}")
        lines = data[offset:headEnd].decode("latin-1").split("\r\n")
        statusParts = lines[0].split(" ", 2)
        if not statusParts[0].startswith("HTTP/") or len(statusParts) < 2:
            raise ValueError(f"not an HTTP status line: {lines[0]!r}")
        version = statusParts[0]
        status = int(statusParts[1])
        reason = statusParts[2] if len(statusParts) > 2 else ""
        headers: List[Tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip(" \t")))
        start = offset
        offset = headEnd + 4
        response = RawResponse(version, status, reason, headers, b"")
        if 100 <= status < 200:
            response.raw = data[start:offset]
            responses.append(response)
            continue
        isHead = heads[finalIndex] if finalIndex < len(heads) else False
        finalIndex += 1
        transferEncoding = (response.header("Transfer-Encoding") or "").lower()
        contentLength = response.header("Content-Length")
        if isHead or status in (204, 304):
            pass
        elif "chunked" in transferEncoding:
            response.chunked = True
            response.body, offset, response.complete = _decodeChunked(data, offset)
        elif contentLength is not None:
            length = int(contentLength)
            response.body = data[offset:offset + length]
            response.complete = len(response.body) == length
            offset = min(offset + length, len(data))
        else:
            response.body = data[offset:]
            offset = len(data)
        response.raw = data[start:offset]
        responses.append(response)
    return responses


class SilentBackend:
    """
    A backend that accepts connections and reads requests but never
    answers (a hung application server), for read timeouts.  A thread
    accepts and keeps every connection open until L{close}.

    @ivar received: the bytes of every connection so far, joined.
    """

    def __init__(self) -> None:
        """Listen on 127.0.0.1 on a free port and start accepting."""
        import threading

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self.received = b""
        self.connections = 0
        self._open: List[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """C{127.0.0.1:PORT}, as written in upstream blocks."""
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        """Accept, and read whatever arrives, until closed."""
        import select

        while not self._closed:
            try:
                conn, _ = self._socket.accept()
                self._open.append(conn)
                self.connections += 1
            except OSError:
                pass
            readable = [c for c in self._open if c.fileno() >= 0]
            if readable:
                for conn in select.select(readable, [], [], 0)[0]:
                    try:
                        self.received += conn.recv(65536)
                    except OSError:
                        pass

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed = True
        self._thread.join(5)
        for conn in self._open:
            conn.close()
        self._socket.close()

    def __enter__(self) -> "SilentBackend":
        """Already listening."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Always close on leaving a C{with} block."""
        self.close()
