"""
C{worker_processes N} under the C{rproxy} command, as real processes: a
master that binds the sockets and keeps N workers serving on them,
restarts a worker that dies, reloads by starting new workers on the same
socket, and takes its workers with it when it stops or dies.

Every wait polls with a deadline; no test sleeps for a fixed time.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any, Set

from twisted_rproxy.master import WORKER_ENV

from .harness import _subprocessEnv, freePort, portAccepts, request
from .test_cli import (  # noqa: F401 (prefix is a fixture)
    listeningInode,
    prefix,
    rproxyCommand,
    run,
    startRunning,
    versionConfig,
    waitFor,
    write,
)

MAIN = "pid logs/custom.pid;\nworker_processes 2;"
"""The main-context lines of every config here."""


def workerConfig(port: int, version: str, backend: Any, workers: str = MAIN) -> str:
    """
    L{versionConfig} plus C{/pid}, which answers with the serving process's
    pid.
    """
    return versionConfig(port, version, backend, mainExtra=workers).replace(
        "        location = /version",
        "        location = /pid { return 200 $pid; }\n        location = /version", 1)


def children(pid: int) -> Set[int]:
    """
    @return: the pids of C{pid}'s live child processes (from /proc).
    """
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state, fields[1] the parent pid.
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def servingPids(port: int, wanted: int) -> Set[int]:
    """
    Ask C{/pid} on new connections until C{wanted} different processes
    have answered (or 200 requests were made).

    @return: the pids that answered.
    """
    seen: Set[int] = set()
    for _ in range(200):
        seen.add(int(request(port, path="/pid").body))
        if len(seen) >= wanted:
            break
    return seen


def alive(pid: int) -> bool:
    """Whether a process exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def testWorkersShareTheListeningSocket(backend: Any, rproxyRunner: Any) -> None:
    """
    The pid file names the master; it runs two workers, and both answer
    requests on the one port, while the master itself serves none.
    """
    port = freePort()
    running = startRunning(rproxyRunner, workerConfig(port, "v1", backend))
    master = running.runner.process.pid
    workers = waitFor(lambda: len(children(master)) == 2 and children(master), "two workers")
    assert configVersion(port) == "v1"
    # A worker that is still starting answers nothing yet: wait for both.
    waitFor(lambda: servingPids(port, 2) == workers, "both workers to answer")


def configVersion(port: int) -> str:
    """The body of C{GET /version}."""
    return request(port, path="/version").body.decode()


def testDeadWorkerIsReplaced(backend: Any, rproxyRunner: Any) -> None:
    """
    A worker killed outright is replaced by a new one, logged in the
    error log as nginx logs it, and the port keeps answering.
    """
    port = freePort()
    running = startRunning(rproxyRunner, workerConfig(port, "v1", backend))
    master = running.runner.process.pid
    workers = waitFor(lambda: len(children(master)) == 2 and children(master), "two workers")
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    replaced = waitFor(
        lambda: (lambda now: len(now) == 2 and victim not in now and now)(children(master)),
        "a replacement worker")
    waitFor(lambda: servingPids(port, 2) == replaced, "the new worker to answer")
    errorLog = (running.prefix / "logs" / "error.log").read_text()
    assert f"worker process {victim} exited on signal 9" in errorLog


def testReloadStartsNewWorkersOnTheSameSocket(backend: Any, rproxyRunner: Any) -> None:
    """
    C{-s reload} starts workers on the new config and lets the old ones
    exit, on the very same listening socket; a bad new config leaves the
    running workers alone.
    """
    port = freePort()
    running = startRunning(rproxyRunner, workerConfig(port, "v1", backend))
    master = running.runner.process.pid
    old = waitFor(lambda: len(children(master)) == 2 and children(master), "two workers")
    socketBefore = listeningInode(port)

    running.rewrite("events {}\nhttp {\n    bogus;\n}\n")
    os.kill(master, signal.SIGHUP)  # "-s reload" would refuse to send it
    waitFor(lambda: "reload failed" in running.runner.stderr, "the failed reload")
    assert children(master) == old
    assert configVersion(port) == "v1"

    running.rewrite(workerConfig(port, "v2", backend))
    running.signal("reload")
    waitFor(lambda: configVersion(port) == "v2", "the new config to answer")
    waitFor(lambda: not any(alive(pid) for pid in old), "the old workers to exit")
    new = waitFor(lambda: len(children(master)) == 2 and children(master), "two new workers")
    assert not new & old
    assert listeningInode(port) == socketBefore


def testReloadChangesTheWorkerCount(backend: Any, rproxyRunner: Any) -> None:
    """
    A reload that changes C{worker_processes} runs the new number.
    """
    port = freePort()
    running = startRunning(rproxyRunner, workerConfig(port, "v1", backend))
    master = running.runner.process.pid
    waitFor(lambda: len(children(master)) == 2, "two workers")
    running.rewrite(workerConfig(port, "v2", backend, "pid logs/custom.pid;\nworker_processes 3;"))
    running.signal("reload")
    waitFor(lambda: configVersion(port) == "v2", "the new config to answer")
    waitFor(lambda: len(children(master)) == 3, "three workers")


def testReloadMovesTheMastersErrorLog(backend: Any, rproxyRunner: Any) -> None:
    """
    A reload that moves C{error_log} moves the master's own lines too: a
    worker death after it is logged in the new file only.
    """
    port = freePort()
    running = startRunning(rproxyRunner, workerConfig(port, "v1", backend))
    master = running.runner.process.pid
    waitFor(lambda: len(children(master)) == 2, "two workers")
    running.rewrite(workerConfig(
        port, "v2", backend, MAIN + "\nerror_log logs/moved.log error;"))
    running.signal("reload")
    waitFor(lambda: configVersion(port) == "v2", "the new config to answer")
    new = waitFor(lambda: len(children(master)) == 2 and children(master), "two new workers")
    victim = min(new)
    os.kill(victim, signal.SIGKILL)
    line = f"worker process {victim} exited on signal 9"
    moved = running.prefix / "logs" / "moved.log"
    waitFor(lambda: moved.exists() and line in moved.read_text(), "the line in the new log")
    assert line not in (running.prefix / "logs" / "error.log").read_text()


def testQuitStopsTheWorkers(backend: Any, rproxyRunner: Any) -> None:
    """
    C{-s quit} stops every worker, then the master exits 0, removing the
    pid file and closing the port.
    """
    port = freePort()
    running = startRunning(rproxyRunner, workerConfig(port, "v1", backend))
    master = running.runner.process.pid
    workers = waitFor(lambda: len(children(master)) == 2 and children(master), "two workers")
    running.signal("quit")
    waitFor(lambda: not running.runner.isRunning(), "the master to exit")
    assert running.runner.stop() == 0
    assert not any(alive(pid) for pid in workers)
    assert not running.pidPath.exists()
    assert not portAccepts(port)


def testWorkersStopWhenTheMasterDies(backend: Any, rproxyRunner: Any) -> None:
    """
    A master killed outright (no chance to stop them) leaves no worker
    behind: each notices and exits.
    """
    port = freePort()
    running = startRunning(rproxyRunner, workerConfig(port, "v1", backend))
    master = running.runner.process.pid
    workers = waitFor(lambda: len(children(master)) == 2 and children(master), "two workers")
    os.kill(master, signal.SIGKILL)
    try:
        # Longer than usual: a worker killed this early may still be
        # starting, and PyPy starts slowly on a loaded machine.
        waitFor(lambda: not any(alive(pid) for pid in workers), "the workers to exit", timeout=60)
    except BaseException:
        print(_describe(workers), running.runner.stderr)
        raise
    assert not portAccepts(port)


def _describe(pids: Set[int]) -> str:
    """
    @return: what /proc says of each of C{pids}, for a failure message.
    """
    lines = []
    for pid in sorted(pids):
        for name in ("stat", "wchan", "cmdline"):
            try:
                text = Path(f"/proc/{pid}/{name}").read_text(errors="replace")
            except OSError as e:
                text = str(e)
            lines.append(f"{pid} {name}: {text.strip()}")
    return "\n".join(lines)


def testWorkerWithoutItsConfigSaysSo(prefix: Path) -> None:
    """
    A worker whose master died before handing over the config exits at
    once with an error saying so, not a traceback.
    """
    env = dict(_subprocessEnv(), **{WORKER_ENV: "1"})
    result = run(rproxyCommand(prefix), prefix, env=env)
    assert result.returncode == 1
    assert "[emerg] the master went away before handing over the configuration" in result.stderr
    assert "Traceback" not in result.stderr


def testBusyPortFailsBeforeAnyWorker(prefix: Path) -> None:
    """
    With workers too, an address that cannot be bound is reported by the
    command itself, exit status 1, as nginx's master reports it.
    """
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        write(prefix / "nginx.conf", versionConfig(port, "v1", _NoBackend(), mainExtra=MAIN))
        result = run(rproxyCommand(prefix, "-c", "nginx.conf", "-g", "daemon off;"), prefix)
    finally:
        taken.close()
    assert result.returncode == 1
    assert f"[emerg] bind() to 127.0.0.1:{port} failed" in result.stderr


class _NoBackend:
    """A backend address for a config that never proxies."""

    address = "127.0.0.1:9"

