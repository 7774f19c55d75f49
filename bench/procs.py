# -*- test-case-name: tests.integration.test_bench -*-
"""
The processes of a benchmark run, each pinned to a CPU with C{taskset}:
the backend nginx, the SSE backend and the proxies under test (nginx,
twisted_rproxy, haproxy, Caddy), started and stopped with the integration tests'
runners; plus what the harness reads of them from C{/proc}: CPU time and
resident memory.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tests.integration.harness import (
    REPO_ROOT,
    NginxRunner,
    RproxyRunner,
    ServerRunner,
    _subprocessEnv,
)

from bench.configs import backendConfig, caddyConfig, haproxyConfig, proxyConfig, writeBodies

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""Units of utime/stime in /proc/PID/stat."""


def _pinned(cpu: Optional[str], command: List[str]) -> List[str]:
    """C{command} run under C{taskset -c cpu} (unchanged when C{cpu} is None)."""
    if cpu is None:
        return command
    return ["taskset", "-c", cpu] + command


class PinnedNginx(NginxRunner):
    """nginx (proxy or backend) pinned to a CPU."""

    def __init__(self, confText: str, cpu: Optional[str], label: str = "nginx",
                 **kwargs: object) -> None:
        """
        @param confText: the nginx.conf text.
        @param cpu: the CPU list for taskset, or None for no pinning.
        @param label: the name used in messages and the prefix directory.
        """
        self.label = label
        super().__init__(confText, **kwargs)  # type: ignore[arg-type]
        self.cpu = cpu

    def command(self) -> List[str]:
        """nginx's argv under taskset."""
        return _pinned(self.cpu, super().command())


class PinnedRproxy(RproxyRunner):
    """twisted_rproxy (one process) pinned to a CPU."""

    def __init__(self, confText: str, cpu: Optional[str], python: Optional[str] = None,
                 **kwargs: object) -> None:
        """
        @param confText: the nginx.conf text, the same nginx runs.
        @param cpu: the CPU list for taskset, or None for no pinning.
        @param python: the interpreter to run it with (this one by default).
        """
        super().__init__(confText, **kwargs)  # type: ignore[arg-type]
        self.cpu = cpu
        self.python = python or sys.executable

    def command(self) -> List[str]:
        """python -m twisted_rproxy ... under taskset."""
        command = super().command()
        command[0] = self.python
        return _pinned(self.cpu, command)


class HAProxyRunner(ServerRunner):
    """haproxy in the foreground (-db) with one thread, pinned to a CPU."""

    label = "haproxy"

    def __init__(self, confText: str, port: int, cpu: Optional[str],
                 binary: str = "haproxy", **kwargs: object) -> None:
        """
        @param confText: the haproxy.cfg text.
        @param port: its listening port on 127.0.0.1 (what to wait for).
        @param cpu: the CPU list for taskset, or None for no pinning.
        @param binary: the haproxy executable.
        """
        super().__init__(confText, addresses=[("127.0.0.1", port)], **kwargs)  # type: ignore[arg-type]
        self.configPath = self.prefix / "haproxy.cfg"
        self.configPath.write_text(confText, encoding="utf-8")
        self.cpu = cpu
        self.binary = binary

    @property
    def errorLogPath(self) -> Path:
        """haproxy logs nothing to a file here (its alerts go to stderr)."""
        return self.prefix / "error.log"

    def command(self) -> List[str]:
        """haproxy -db -f CFG under taskset."""
        return _pinned(self.cpu, [self.binary, "-db", "-f", str(self.configPath)])


class CaddyRunner(ServerRunner):
    """
    Caddy (C{caddy run}) pinned to a CPU, with C{GOMAXPROCS} set to its
    workers, as the issue measured it, and its data and config
    directories in its own prefix rather than the user's home.
    """

    label = "caddy"

    def __init__(self, confText: str, port: int, cpu: Optional[str],
                 binary: str = "caddy", workers: int = 1, **kwargs: object) -> None:
        """
        @param confText: the Caddyfile text.
        @param port: its listening port on 127.0.0.1 (what to wait for).
        @param cpu: the CPU list for taskset, or None for no pinning.
        @param binary: the caddy executable.
        @param workers: C{GOMAXPROCS}: the threads running Go code at once.
        """
        super().__init__(confText, addresses=[("127.0.0.1", port)], **kwargs)  # type: ignore[arg-type]
        self.configPath = self.prefix / "Caddyfile"
        self.configPath.write_text(confText, encoding="utf-8")
        self.cpu = cpu
        self.binary = binary
        self.workers = workers

    @property
    def errorLogPath(self) -> Path:
        """Caddy logs to stderr here; this file stays empty."""
        return self.prefix / "error.log"

    def environment(self) -> Optional[Dict[str, str]]:
        """Ours, with C{GOMAXPROCS} and the XDG directories set."""
        return dict(os.environ, GOMAXPROCS=str(self.workers),
                    XDG_DATA_HOME=str(self.prefix), XDG_CONFIG_HOME=str(self.prefix))

    def command(self) -> List[str]:
        """caddy run --config Caddyfile under taskset."""
        return _pinned(self.cpu, [self.binary, "run", "--config", str(self.configPath),
                                  "--adapter", "caddyfile"])


class BareRelayRunner(ServerRunner):
    """
    The bare Twisted byte relay (bench/bareproxy.py), pinned to a CPU: the
    ceiling the reactor leaves, measured in the same run.
    """

    label = "bare"

    def __init__(self, port: int, backendPort: int, cpu: Optional[str],
                 python: Optional[str] = None, **kwargs: object) -> None:
        """
        @param port: where it listens on 127.0.0.1.
        @param backendPort: the backend nginx it relays to.
        @param cpu: the CPU list for taskset, or None for no pinning.
        @param python: the interpreter to run it with (this one by default).
        """
        super().__init__("", addresses=[("127.0.0.1", port)], **kwargs)  # type: ignore[arg-type]
        self.listenPort = port
        self.backendPort = backendPort
        self.cpu = cpu
        self.python = python or sys.executable

    @property
    def errorLogPath(self) -> Path:
        """No log file: tracebacks, if any, go to stderr."""
        return self.prefix / "error.log"

    def command(self) -> List[str]:
        """python bench/bareproxy.py PORT BACKEND under taskset."""
        script = str(REPO_ROOT / "bench" / "bareproxy.py")
        return _pinned(self.cpu, [self.python, script, str(self.listenPort),
                                  str(self.backendPort)])


class StreamBackendRunner(ServerRunner):
    """The SSE backend (bench/sse_backend.py), pinned to a CPU."""

    label = "sse-backend"

    def __init__(self, port: int, cpu: Optional[str], **kwargs: object) -> None:
        """
        @param port: where it listens on 127.0.0.1.
        @param cpu: the CPU list for taskset, or None for no pinning.
        """
        super().__init__("", addresses=[("127.0.0.1", port)], **kwargs)  # type: ignore[arg-type]
        self.listenPort = port
        self.cpu = cpu

    @property
    def errorLogPath(self) -> Path:
        """No log file: tracebacks, if any, go to stderr."""
        return self.prefix / "error.log"

    def environment(self) -> Optional[Dict[str, str]]:
        """This checkout first on the path, so C{bench} imports."""
        return _subprocessEnv()

    def command(self) -> List[str]:
        """python -m bench.sse_backend --port PORT under taskset."""
        return _pinned(self.cpu, [sys.executable, "-m", "bench.sse_backend",
                                  "--port", str(self.listenPort)])


def startBackend(port: int, cpu: Optional[str], connections: int = 4096) -> PinnedNginx:
    """
    Start the backend nginx serving the fixed bodies.

    @param port: where it listens on 127.0.0.1.
    @param cpu: the CPU it is pinned to.
    @param connections: its worker_connections.
    @return: the running backend (call C{cleanup()} when done).
    """
    runner = PinnedNginx(backendConfig(port, connections), cpu, label="backend")
    writeBodies(runner.prefix / "html")
    return runner.start()  # type: ignore[return-value]


@dataclass
class ProxySpec:
    """
    How to run one proxy under test: its name in tables and JSON, and what
    the harness needs to know to start it.
    """

    name: str
    port: int
    backendPort: int
    streamPort: int
    connections: int
    cpu: Optional[str]
    fileLimit: int = 1 << 20
    python: Optional[str] = None
    """The interpreter that runs twisted_rproxy (None: this one)."""
    workers: int = 1
    """C{worker_processes} (haproxy: C{nbthread}; Caddy: C{GOMAXPROCS})."""
    tls: Optional[Tuple[int, str, str]] = None
    """An HTTPS listener C{(port, certificate, key)} (not for haproxy)."""

    def runner(self) -> ServerRunner:
        """A runner (not started) for this proxy with the shared config."""
        if self.name == "caddy":
            text = caddyConfig(self.port, self.backendPort, self.streamPort, tls=self.tls)
            return CaddyRunner(text, self.port, self.cpu, binary=caddyBinary() or "caddy",
                               workers=self.workers)
        if self.name == "haproxy":
            text = haproxyConfig(self.port, self.backendPort, self.streamPort,
                                 self.connections,
                                 strictLimits=self.fileLimit >= 2 * self.connections + 1024)
            text = text.replace("nbthread 1", f"nbthread {self.workers}")
            binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
            return HAProxyRunner(text, self.port, self.cpu, binary=binary)
        text = proxyConfig(self.port, self.backendPort, self.streamPort, self.connections,
                           tls=self.tls, wsRelay=self.name == "rproxy")
        text = text.replace("worker_processes 1;", f"worker_processes {self.workers};")
        if self.name == "nginx":
            return PinnedNginx(text, self.cpu)
        if self.name == "rproxy":
            return PinnedRproxy(text, self.cpu, python=self.python)
        if self.name == "bare":
            return BareRelayRunner(self.port, self.backendPort, self.cpu, python=self.python)
        raise ValueError(f"unknown proxy {self.name!r}")


def caddyBinary() -> Optional[str]:
    """caddy on PATH (Debian installs it in /usr/bin), or None."""
    return shutil.which("caddy")


# /proc readings.


def _statFields(pid: int) -> List[str]:
    """The fields of /proc/PID/stat after the command name."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode("ascii", "replace")
    return data[data.rindex(")") + 2:].split()


def cpuSeconds(pid: int) -> float:
    """
    utime + stime of a process so far, in seconds (0 if it is gone).

    @param pid: the process.
    """
    try:
        fields = _statFields(pid)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0.0
    # After "pid (comm) ": state is field 3, so utime (14) and stime (15)
    # are at offsets 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memoryKib(pid: int) -> Tuple[int, int]:
    """
    (VmRSS, VmHWM) of a process in KiB, from /proc/PID/status; (0, 0) if it
    is gone.

    @param pid: the process.
    """
    rss = peak = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, peak


def cpusAllowed(pid: int) -> str:
    """The CPU list a process may run on (what taskset set), or "?"."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
    except (FileNotFoundError, ProcessLookupError):
        pass
    return "?"


def childPids(pid: int) -> List[int]:
    """The live direct children of a process (nginx's workers)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _statFields(int(entry))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return sorted(children)


def servingPids(leader: int) -> List[int]:
    """
    The processes that serve traffic: a master's workers when it has
    children (nginx), else the leader itself (twisted_rproxy, haproxy).
    RSS is summed over these; a master's few idle MiB would only blur the
    per-connection figures.

    @param leader: the pid the harness started.
    """
    return childPids(leader) or [leader]


def coreBusySeconds(cpu: Optional[str]) -> float:
    """
    Seconds CPU C{cpu} has spent running processes (user, nice, system,
    steal) since boot, from /proc/stat; 0 when unknown.  Interrupt and
    softirq time is left out: on loopback much of it is the network stack
    working for the proxy itself.

    @param cpu: a single CPU number as text, as the pinning uses.
    """
    if cpu is None or not cpu.isdigit():
        return 0.0
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    ticks = [int(v) for v in line.split()[1:]]
                    return (ticks[0] + ticks[1] + ticks[2] + ticks[7]) / CLOCK_TICKS
    except OSError:
        pass
    return 0.0


class ProcessSampler:
    """
    CPU time and memory of a proxy's processes across one measurement:
    call L{start} before the load and L{stop} after it.

    @ivar cpuPercent: CPU used over the wall time, in percent of one core.
    @ivar rssKib: summed VmRSS at the end.
    @ivar peakRssKib: summed VmHWM (peak RSS since the process started).
    @ivar otherPercent: how busy the proxy's CPU was with anything but the
        proxy, in percent: other work on the machine landing on the pinned
        core, which makes that run's figures unreliable.
    """

    def __init__(self, leader: int, cpu: Optional[str] = None) -> None:
        """
        @param leader: the pid the harness started (nginx's master).
        @param cpu: the CPU the proxy is pinned to, to watch for other work.
        """
        self.leader = leader
        self.cpu = cpu
        self.otherPercent: Optional[float] = None
        self._startCore = 0.0
        self.pids: Sequence[int] = servingPids(leader)
        self.cpuPercent = 0.0
        self.cpuSeconds = 0.0
        self.rssKib = 0
        self.peakRssKib = 0
        self._startCpu = 0.0
        self._startWall = 0.0

    def _allPids(self) -> List[int]:
        """The leader and its serving processes (CPU counts them all)."""
        return sorted({self.leader, *self.pids})

    def start(self) -> None:
        """Snapshot CPU time and wall clock."""
        self.pids = servingPids(self.leader)
        self._startCpu = sum(cpuSeconds(p) for p in self._allPids())
        self._startCore = coreBusySeconds(self.cpu)
        self._startWall = time.monotonic()

    def stop(self) -> None:
        """Compute CPU use since L{start} and read memory now."""
        wall = time.monotonic() - self._startWall
        self.cpuSeconds = sum(cpuSeconds(p) for p in self._allPids()) - self._startCpu
        self.cpuPercent = 100.0 * self.cpuSeconds / wall if wall > 0 else 0.0
        if self.cpu is not None and wall > 0:
            busy = 100.0 * (coreBusySeconds(self.cpu) - self._startCore) / wall
            self.otherPercent = max(0.0, busy - self.cpuPercent)
        self.rssKib, self.peakRssKib = self.memory()

    def memory(self) -> Tuple[int, int]:
        """Summed (VmRSS, VmHWM) of the serving processes, in KiB."""
        readings = [memoryKib(p) for p in servingPids(self.leader)]
        return sum(r for r, _ in readings), sum(h for _, h in readings)


__all__ = [
    "REPO_ROOT", "PinnedNginx", "PinnedRproxy", "HAProxyRunner", "CaddyRunner",
    "StreamBackendRunner", "caddyBinary",
    "startBackend", "ProxySpec", "ProcessSampler", "cpuSeconds", "memoryKib",
    "cpusAllowed", "servingPids", "coreBusySeconds",
]
