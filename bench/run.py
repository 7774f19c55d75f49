#!/usr/bin/env python3
# -*- test-case-name: tests.integration.test_bench -*-
"""
Benchmark twisted_rproxy against nginx (and haproxy and Caddy when
installed) on this machine, side by side, in one run: same backend, same
port, the same config text (its equivalent for haproxy and Caddy), the
proxy pinned to one CPU and the load to another.

    python3 bench/run.py [--quick] [--scenarios a,b] [--proxies nginx,rproxy,haproxy,caddy]
                         [--duration S] [--python PATH]

Prints a table per scenario and writes JSON plus a PNG chart of the
twisted_rproxy/nginx ratios under bench/results/.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import report  # noqa: E402
from bench.load import (  # noqa: E402
    IdleConnections,
    findWrk,
    measureStreams,
    prime,
    runH2load,
    runWrk,
)
from bench.wsload import measureWebSocketEcho  # noqa: E402
from bench.procs import (  # noqa: E402
    ProcessSampler,
    ProxySpec,
    StreamBackendRunner,
    caddyBinary,
    cpusAllowed,
    servingPids,
    startBackend,
)
from tests.integration.harness import (  # noqa: E402
    StartupError,
    _subprocessEnv,
    findNginx,
    freePort,
)

PROXIES = ("nginx", "rproxy", "haproxy", "caddy", "bare")
"""
Every proxy the harness knows, in the order they run.  C{bare} is
bench/bareproxy.py, a Twisted byte relay with no HTTP: the reactor's
ceiling, not a proxy (asked for by name, never by default).
"""

DEFAULT_PROXIES = "nginx,rproxy,haproxy,caddy"
"""What runs without C{--proxies} (haproxy and Caddy only when installed)."""

CADDY_DEFAULT_SCENARIOS = ("get1k",)
"""Caddy's scenarios when it runs by default: the one the issue's target
compares against Caddy (C{>= 1.5x}), so the default run stays under 5
minutes.  Named in C{--proxies}, Caddy runs every scenario."""

BARE_SCENARIOS = ("get1k", "get1k_close", "get64k", "get1m", "post16k", "idle1k", "idle10k")
"""What the bare relay can run: plain HTTP/1.1 to the backend nginx, one process."""

PYPY_WARMUP = 20
"""Seconds of unrecorded load before each measurement of twisted_rproxy on
PyPy: its JIT is still compiling after 1 s (get1k measured 4,600 req/s
after 1 s and 7,000 to 8,500 after 20 s here)."""

RESULTS_DIR = REPO_ROOT / "bench" / "results"
"""Where JSON and charts go by default (git-ignored)."""

CLIENTS = 50
"""Concurrent wrk connections in the throughput scenarios."""


@dataclass(frozen=True)
class Scenario:
    """
    One scenario: C{kind} says how it is driven (wrk, sse or idle) and
    C{params} what with.
    """

    name: str
    kind: str
    title: str
    params: Dict[str, Any] = field(default_factory=dict)


SCENARIOS: Dict[str, Scenario] = {s.name: s for s in (
    Scenario("get1k", "wrk", "1 KiB GET, 50 keepalive clients",
             {"path": "/1k"}),
    Scenario("get1k_close", "wrk", "1 KiB GET, new connection per request",
             {"path": "/1k", "headers": ("Connection: close",)}),
    Scenario("get1k_2w", "wrk", "1 KiB GET, 50 keepalive clients, 2 workers on both CPUs",
             {"path": "/1k", "workers": 2}),
    Scenario("get1k_tls", "wrk", "1 KiB GET over HTTPS, 50 keepalive clients",
             {"path": "/1k", "tls": True}),
    Scenario("tls_handshake", "wrk", "1 KiB GET over HTTPS, a new TLS connection per request",
             {"path": "/1k", "tls": True, "headers": ("Connection: close",)}),
    Scenario("get1k_h2", "h2load", "1 KiB GET over HTTP/2 (TLS), 4 connections x 32 streams",
             {"path": "/1k", "tls": True, "connections": 4, "streams": 32}),
    Scenario("get64k", "wrk", "64 KiB GET, 50 keepalive clients",
             {"path": "/64k"}),
    Scenario("get1m", "wrk", "1 MiB GET, 50 keepalive clients",
             {"path": "/1m"}),
    Scenario("post16k", "wrk", "16 KiB POST bodies, 50 keepalive clients",
             {"path": "/post", "postBytes": 16 * 1024}),
    Scenario("sse", "sse", "SSE, 20 streams x 50 events/s, proxy_buffering off",
             {"streams": 20, "intervalMs": 20}),
    Scenario("ws_echo", "ws", "WebSocket echo, 50 connections x 10 in flight, 64 B"
             " (byte tunnel in both)", {"path": "/ws"}),
    Scenario("ws_echo_relay", "ws", "WebSocket echo as ws_echo, twisted_rproxy relaying"
             " message by message (nginx: its tunnel)", {"path": "/ws", "rproxyPath": "/wsrelay"}),
    Scenario("idle1k", "idle", "1,000 idle keepalive client connections",
             {"count": 1000}),
    Scenario("idle10k", "idle", "10,000 idle keepalive client connections",
             {"count": 10000}),
)}
"""Every scenario, in the order they run."""


def say(text: str) -> None:
    """Progress and tables go to stdout, flushed (runs take minutes)."""
    print(text, flush=True)


# Installing what is missing.


def _asRoot() -> Optional[List[str]]:
    """The prefix that runs a command as root, or None when impossible."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo", "-n"]
    return None


def aptInstall(packages: Sequence[str]) -> bool:
    """
    C{apt-get install -y PACKAGES} (after an update), as root or through
    C{sudo -n}.  The stock nginx service the package may start is stopped
    again: the harness runs its own instances.

    @return: whether the install succeeded.
    """
    prefix = _asRoot()
    if prefix is None or not shutil.which("apt-get"):
        say(f"cannot install {' '.join(packages)}: need root (or sudo) and apt-get")
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say(f"installing {' '.join(packages)} with apt-get")
    subprocess.run(prefix + ["apt-get", "update", "-q"], env=env, check=False)
    result = subprocess.run(prefix + ["apt-get", "install", "-y", "-q",
                                      "--no-install-recommends", *packages],
                            env=env, check=False)
    for service in ("nginx", "haproxy", "caddy"):
        if service in " ".join(packages) and shutil.which("service"):
            subprocess.run(prefix + ["service", service, "stop"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return result.returncode == 0


def ensureTools(proxies: List[str], installHaproxy: bool, chart: bool = True,
                python: Optional[str] = None, installCaddy: bool = False) -> List[str]:
    """
    Make sure nginx, wrk and taskset exist (installing nginx-light and wrk
    if not), haproxy and Caddy too when asked to install them, matplotlib
    for the chart, and the proxy's own dependencies (for C{python}, the
    interpreter that runs twisted_rproxy, by default this one).

    @return: the proxies that can run (haproxy and Caddy dropped when
        missing).
    @raise SystemExit: nginx or wrk is missing and cannot be installed.
    """
    missing = [pkg for pkg, ok in (("nginx-light", findNginx()), ("wrk", findWrk()),
                                   ("util-linux", shutil.which("taskset"))) if not ok]
    if "haproxy" in proxies and not _haproxyBinary() and installHaproxy:
        missing.append("haproxy")
    if "caddy" in proxies and not caddyBinary() and installCaddy:
        missing.append("caddy")
    if missing:
        aptInstall(missing)
    if not findNginx() or not findWrk():
        raise SystemExit("nginx and wrk are needed: apt-get install -y nginx-light wrk")
    for name, found in (("haproxy", _haproxyBinary()), ("caddy", caddyBinary())):
        if name in proxies and not found:
            say(f"{name} is not installed: skipping it (--install-{name} installs it)")
            proxies = [p for p in proxies if p != name]
    if chart:
        _ensurePython("matplotlib", "matplotlib", "python3-matplotlib")
    if "rproxy" in proxies:
        python = python or sys.executable
        check = subprocess.run([python, "-c", "import twisted_rproxy.cli"],
                               env=_subprocessEnv(), capture_output=True)
        if check.returncode != 0:
            say(f"installing twisted_rproxy's dependencies ({python} -m pip install .)")
            subprocess.run([python, "-m", "pip", "install", "-q", str(REPO_ROOT)],
                           check=False)
    return proxies


def _ensurePython(module: str, pipName: str, debianName: str) -> None:
    """Import C{module}, else pip-install it, else (system Python) apt-get it."""
    try:
        __import__(module)
        return
    except ImportError:
        pass
    say(f"installing {pipName} (pip)")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", pipName],
                            env=dict(os.environ, PIP_ROOT_USER_ACTION="ignore",
                                     PIP_DISABLE_PIP_VERSION_CHECK="1"),
                            check=False)
    if result.returncode != 0 and sys.executable.startswith("/usr/bin/"):
        aptInstall([debianName])
    import importlib

    importlib.invalidate_caches()
    try:
        __import__(module)
    except ImportError:
        say(f"{module} is unavailable: the chart will be skipped")


def _haproxyBinary() -> Optional[str]:
    """haproxy on PATH or in /usr/sbin, or None."""
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


# Machine set-up.


def raiseFileLimit(needed: int) -> int:
    """
    Raise RLIMIT_NOFILE (soft to hard; the hard limit too when root) so
    this process and its children can hold C{needed} descriptors.

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed
    if hard != resource.RLIM_INFINITY and hard < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
        except (ValueError, OSError):
            target = hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def usableCpus() -> List[int]:
    """
    The CPUs this process may run on: C{os.sched_getaffinity} where the
    interpreter has it (PyPy 3.9's os lacks it), else the kernel's
    Cpus_allowed_list.
    """
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    cpus: List[int] = []
    for part in cpusAllowed(os.getpid()).split(","):
        first, _, last = part.partition("-")
        if first.isdigit():
            cpus.extend(range(int(first), int(last or first) + 1))
    return cpus or list(range(os.cpu_count() or 1))


def pinSelf(cpu: str) -> None:
    """Move this process to C{cpu}: sched_setaffinity, or taskset without it."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    else:
        subprocess.run(["taskset", "-p", "-c", cpu, str(os.getpid())],
                       stdout=subprocess.DEVNULL, check=True)


def choosePinning(proxyCpu: Optional[int], loadCpu: Optional[int]
                  ) -> Tuple[Optional[str], Optional[str], str]:
    """
    The CPUs for the proxy and for the load (wrk, backends, this harness),
    and a sentence saying so.  With fewer than two usable CPUs nothing is
    pinned.
    """
    cpus = usableCpus()
    if len(cpus) < 2:
        return None, None, f"NOT pinned: only {len(cpus)} usable CPU"
    proxy = proxyCpu if proxyCpu is not None else cpus[0]
    load = loadCpu if loadCpu is not None else next(c for c in cpus if c != proxy)
    text = (f"proxy pinned to CPU {proxy} (taskset -c {proxy}); wrk, the backend nginx, "
            f"the SSE backend and this harness pinned to CPU {load} (taskset -c {load})")
    return str(proxy), str(load), text


def _version(command: List[str]) -> str:
    """The first line a --version style command prints, or "?"."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (result.stdout + result.stderr).strip().splitlines()
    return text[0] if text else "?"


def _pythonVersion(python: str) -> str:
    """C{python}'s version and implementation, e.g. "3.9.16 PyPy", or "?"."""
    return _version([python, "-c", "import platform, sys; "
                     "print(sys.version.split()[0], platform.python_implementation())"])


def machineMeta(pinning: str, options: argparse.Namespace, proxies: List[str]) -> Dict[str, Any]:
    """What the run was: machine, versions, pinning, settings, load average."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        "nginx": _version([findNginx() or "nginx", "-v"]),
        "wrk": _version(["wrk", "--version"]),
        "python": sys.version.split()[0] + " " + platform.python_implementation(),
        "rproxy_python": _pythonVersion(options.python or sys.executable),
        "twisted_rproxy": _version(["git", "-C", str(REPO_ROOT), "describe", "--always",
                                    "--dirty"]),
    }
    if "haproxy" in proxies:
        versions["haproxy"] = _version([_haproxyBinary() or "haproxy", "-v"])
    if "caddy" in proxies:
        versions["caddy"] = _version([caddyBinary() or "caddy", "version"])
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": model,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "pinning": pinning,
        "quick": options.quick,
        "duration_s": options.duration,
        "clients": CLIENTS,
        "proxies": proxies,
        "rproxy_python": options.python or sys.executable,
        "pypy_gc_env": pypyGCEnvironment(),
        "versions": versions,
    }


def pypyGCEnvironment() -> Dict[str, str]:
    """
    The C{PYPY_GC_*} variables the proxies inherit.  PyPy sizes its
    nursery from the CPU cache it detects, and a VM reporting a 480 MiB L3
    gets a 240 MiB one and a heap that grows to gigabytes before a major
    collection; C{PYPY_GC_NURSERY=32MB} keeps the speed (docs/benchmarks.md).
    Recorded so a run says which it measured.
    """
    return {name: value for name, value in sorted(os.environ.items())
            if name.startswith("PYPY_GC_")}


# Running one scenario on one proxy.


@dataclass
class Bench:
    """
    Everything a scenario run needs: the proxy template, the CPUs, the
    settings.
    """

    port: int
    backendPort: int
    streamPort: int
    connections: int
    proxyCpu: Optional[str]
    loadCpu: Optional[str]
    duration: int
    quick: bool
    fileLimit: int
    python: Optional[str] = None
    broken: Dict[str, str] = field(default_factory=dict)
    tlsPort: int = 0
    """The proxies' HTTPS port (0: none, the TLS scenarios are skipped)."""
    certificate: Optional[Tuple[str, str]] = None
    """The server certificate and key the HTTPS listener uses."""

    pypy: bool = False
    """Whether twisted_rproxy (and the bare relay) run on PyPy."""

    onlyScenarios: Dict[str, Sequence[str]] = field(default_factory=dict)
    """Proxies that run only the scenarios listed (Caddy by default)."""

    def warmup(self) -> int:
        """Seconds of unrecorded load before measuring the current proxy."""
        if self.quick:
            return 0
        if self.pypy and self.proxyName in ("rproxy", "bare"):
            return PYPY_WARMUP
        return 1

    @property
    def maxIdle(self) -> int:
        """The most idle connections the fd limit lets a proxy hold."""
        return max(0, self.fileLimit - 1024)

    def spec(self, proxy: str, workers: int = 1) -> ProxySpec:
        """
        The proxy's start-up description on the shared port and backends.

        @param workers: worker processes (threads for haproxy); with more
            than one the proxy may use every usable CPU, sharing the load
            generator's.
        """
        cpu = self.proxyCpu
        if workers > 1 and cpu is not None and self.loadCpu is not None:
            cpu = f"{cpu},{self.loadCpu}"
        tls = None
        if self.certificate is not None and proxy != "haproxy":
            tls = (self.tlsPort, self.certificate[0], self.certificate[1])
        return ProxySpec(proxy, self.port, self.backendPort, self.streamPort,
                         self.connections, cpu, self.fileLimit, self.python, workers, tls)

    def runOne(self, scenario: Scenario, proxy: str) -> Dict[str, Any]:
        """
        Start C{proxy}, prime it, measure C{scenario}, stop it.

        @return: the figures, or C{{"error": ...}} when it could not run.
        """
        if scenario.kind == "idle" and scenario.params["count"] > self.maxIdle:
            return {"error": f"skipped: the fd limit allows {self.maxIdle} "
                             f"idle connections, not {scenario.params['count']}"}
        if scenario.params.get("tls") and (self.certificate is None or proxy == "haproxy"):
            return {"error": "skipped: no HTTPS listener" if self.certificate is None
                    else "skipped: the haproxy config here has no TLS listener"}
        only = self.onlyScenarios.get(proxy)
        if only is not None and scenario.name not in only:
            return {"error": f"skipped: by default {proxy} runs {', '.join(only)} only "
                             f"(name it in --proxies for every scenario)"}
        if proxy == "bare" and scenario.name not in BARE_SCENARIOS:
            return {"error": "skipped: the bare relay runs plain HTTP/1.1 to the backend nginx only"}
        if proxy in self.broken:
            return {"error": f"not started (it failed to start before: {self.broken[proxy]})"}
        runner = self.spec(proxy, scenario.params.get("workers", 1)).runner()
        try:
            try:
                runner.start()
            except StartupError as e:
                self.broken[proxy] = str(e).splitlines()[0]
                raise
            assert runner.process is not None
            leader = runner.process.pid
            if prime(self.port) == 0:
                return {"error": "the proxy answered no priming request with 200"}
            pids = servingPids(leader)
            say(f"   {proxy}: pid {leader}, serving pids {pids} "
                f"on CPUs {','.join(sorted({cpusAllowed(p) for p in pids}))}")
            sampler = ProcessSampler(leader, self.proxyCpu)
            self.proxyName = proxy
            measure = getattr(self, "_" + scenario.kind)
            figures: Dict[str, Any] = measure(scenario, sampler)
            figures.update(
                cpu_percent=sampler.cpuPercent,
                cpu_seconds=sampler.cpuSeconds,
                rss_mib=sampler.rssKib / 1024,
                peak_rss_mib=sampler.peakRssKib / 1024,
                other_on_cpu_percent=sampler.otherPercent,
            )
            report.addPerCpuSecond(scenario.kind, figures)
            if not runner.isRunning():
                figures["error"] = "the proxy died during the run"
            return figures
        except Exception as e:  # one proxy's failure must not end the run
            # A StartupError's text already ends with the runner's logs.
            detail = "" if isinstance(e, StartupError) else "\n" + runner.describe()
            say(f"   {proxy} failed: {e!r}{detail}")
            return {"error": (str(e) or repr(e)).splitlines()[0]}
        finally:
            runner.cleanup()

    def _wrk(self, scenario: Scenario, sampler: ProcessSampler) -> Dict[str, Any]:
        """wrk against the proxy: requests/s and latency percentiles."""
        params = scenario.params
        if params.get("tls"):
            url = f"https://127.0.0.1:{self.tlsPort}{params['path']}"
        else:
            url = f"http://127.0.0.1:{self.port}{params['path']}"
        arguments = dict(headers=params.get("headers", ()),
                         postBytes=params.get("postBytes", 0), cpu=self.loadCpu)
        if self.warmup():
            runWrk(url, CLIENTS, self.warmup(), **arguments)  # not recorded
        sampler.start()
        figures = runWrk(url, CLIENTS, self.duration, **arguments)
        sampler.stop()
        figures.pop("raw")
        figures["connections"] = CLIENTS
        return figures

    def _h2load(self, scenario: Scenario, sampler: ProcessSampler) -> Dict[str, Any]:
        """h2load against the HTTPS listener: HTTP/2 streams multiplexed."""
        params = scenario.params
        url = f"https://127.0.0.1:{self.tlsPort}{params['path']}"
        connections, streams = params["connections"], params["streams"]
        if self.warmup():
            runH2load(url, connections, streams, self.warmup(), cpu=self.loadCpu)  # not recorded
        sampler.start()
        figures = runH2load(url, connections, streams, self.duration, cpu=self.loadCpu)
        sampler.stop()
        figures.pop("raw")
        figures["connections"] = connections
        figures["streams"] = streams
        return figures

    def _sse(self, scenario: Scenario, sampler: ProcessSampler) -> Dict[str, Any]:
        """Concurrent event streams: latency of each event through the proxy."""
        interval = scenario.params["intervalMs"]
        seconds = 1 if self.quick else min(self.duration, 5)
        count = max(10, seconds * 1000 // interval)
        sampler.start()
        figures = measureStreams(self.port, scenario.params["streams"], count, interval)
        sampler.stop()
        return figures

    proxyName = ""
    """The proxy being measured (the relay scenario's path depends on it)."""

    def _ws(self, scenario: Scenario, sampler: ProcessSampler) -> Dict[str, Any]:
        """WebSocket echo messages/s and round latency through the proxy."""
        params = scenario.params
        path = params["path"]
        if self.proxyName == "rproxy":
            path = params.get("rproxyPath", path)
        seconds = 1 if self.quick else self.duration
        if self.warmup():
            measureWebSocketEcho(self.port, path, seconds=self.warmup())  # not recorded
        sampler.start()
        figures = measureWebSocketEcho(self.port, path, seconds=seconds)
        sampler.stop()
        figures["path"] = path
        return figures

    def _idle(self, scenario: Scenario, sampler: ProcessSampler) -> Dict[str, Any]:
        """N idle keepalive connections: the proxy's RSS growth per connection."""
        count = scenario.params["count"]
        time.sleep(0.2)
        baseline, _ = sampler.memory()
        sampler.start()
        idle = IdleConnections(self.port, count)
        try:
            idle.open()
            time.sleep(0.5)
            sampler.stop()
        finally:
            idle.close()
        grown = sampler.rssKib - baseline
        return {
            "count": count,
            "opened": idle.opened,
            "failed": idle.failed,
            "open_seconds": idle.seconds,
            "baseline_rss_mib": baseline / 1024,
            "kib_per_connection": grown / idle.opened if idle.opened else None,
        }


def runScenarios(bench: Bench, scenarios: List[Scenario], proxies: List[str],
                 data: Dict[str, Any]) -> None:
    """Run every scenario on every proxy in turn, printing each table as it ends."""
    for scenario in scenarios:
        say(f"-- {scenario.name}: {scenario.title}")
        started = time.monotonic()
        results = {proxy: bench.runOne(scenario, proxy) for proxy in proxies}
        entry = {
            "name": scenario.name,
            "kind": scenario.kind,
            "title": scenario.title,
            "results": results,
            "ratio": report.ratios(scenario.kind, {
                k: v for k, v in results.items() if "error" not in v}),
        }
        data["scenarios"][scenario.name] = entry
        say(report.formatTable(entry) + f"\n   ({time.monotonic() - started:.1f} s)")


# The command.


def parseArguments(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        description="Benchmark twisted_rproxy against nginx (and haproxy, Caddy) on this machine.")
    parser.add_argument("--quick", action="store_true",
                        help="short runs (2 s each, no warm-up): the whole run in under a minute")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, from: {','.join(SCENARIOS)}")
    parser.add_argument("--proxies", default=None,
                        help=f"comma-separated, from: {','.join(PROXIES)} (default "
                             f"{DEFAULT_PROXIES}; haproxy and caddy only run when "
                             "installed, and caddy by default in get1k only; bare is "
                             "the Twisted byte relay, the reactor's ceiling)")
    parser.add_argument("--duration", type=int, default=None,
                        help="seconds per wrk measurement (default 6, --quick 2)")
    parser.add_argument("--install-haproxy", action="store_true",
                        help="apt-get install haproxy when it is missing")
    parser.add_argument("--install-caddy", action="store_true",
                        help="apt-get install caddy when it is missing")
    parser.add_argument("--no-chart", dest="chart", action="store_false",
                        help="write no PNG (and do not install matplotlib)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR,
                        help="directory for the JSON and PNG (default bench/results)")
    parser.add_argument("--port", type=int, default=0,
                        help="the proxies' port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--proxy-cpu", type=int, default=None,
                        help="CPU for the proxy (default: the first usable)")
    parser.add_argument("--load-cpu", type=int, default=None,
                        help="CPU for wrk and the backends (default: the next usable)")
    parser.add_argument("--python", metavar="PATH", default=None,
                        help="the interpreter that runs twisted_rproxy (default: this one), "
                             "e.g. a PyPy venv's bin/python")
    parser.add_argument("--serve", metavar="PROXY", choices=PROXIES,
                        help="start the backends and PROXY pinned as usual and wait "
                             "(for profiling by hand); Ctrl-C or SIGTERM stops")
    options = parser.parse_args(argv)
    if options.duration is None:
        options.duration = 2 if options.quick else 6
    options.duration = max(1, options.duration)
    options.scenarios = [s for s in options.scenarios.split(",") if s]
    options.defaultProxies = options.proxies is None
    options.proxies = [p for p in (options.proxies or DEFAULT_PROXIES).split(",") if p]
    unknown = [s for s in options.scenarios if s not in SCENARIOS]
    unknown += [p for p in options.proxies if p not in PROXIES]
    if unknown:
        parser.error(f"unknown scenario or proxy: {', '.join(unknown)}")
    return options


def serve(bench: Bench, proxy: str) -> None:
    """Run one proxy in front of the backends until interrupted."""
    runner = bench.spec(proxy).runner()
    runner.start()
    try:
        assert runner.process is not None
        prime(bench.port)
        pids = servingPids(runner.process.pid)
        say(f"{proxy} serving on http://127.0.0.1:{bench.port}/1k (also /64k /1m /post /sse); "
            f"serving pids: {' '.join(map(str, pids))}")
        say(f"load it:    taskset -c {bench.loadCpu or '1'} wrk -t1 -c{CLIENTS} -d30s "
            f"http://127.0.0.1:{bench.port}/1k")
        say(f"profile it: py-spy record -o profile.svg --pid {pids[0]} --duration 10")
        say("Ctrl-C (or SIGTERM) stops.")
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        runner.cleanup()


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (and SIGINT, even where a shell ignored it): stop cleanly."""
    raise KeyboardInterrupt(f"signal {signum}")


def makeCertificate(directory: Path) -> Optional[Tuple[str, str]]:
    """
    A throwaway CA and a P-256 certificate for 127.0.0.1, made now, for
    the HTTPS scenarios (nginx and twisted_rproxy use the same files).

    @return: the certificate (full chain) and key paths, or C{None} when
        C{cryptography} is missing.
    """
    try:
        from tests.integration.certs import CertificateAuthority
    except ImportError as e:
        say(f"no HTTPS scenarios: {e}")
        return None
    certificate, key = CertificateAuthority(directory).issue(["127.0.0.1"])
    return str(certificate), str(key)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; return the exit status."""
    options = parseArguments(argv)
    # Every server started is stopped by the finally blocks on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    started = time.monotonic()
    proxies = options.proxies if not options.serve else [options.serve]
    proxies = ensureTools(proxies, options.install_haproxy, options.chart, options.python,
                          options.install_caddy)
    if not proxies:
        say("no proxy to run")
        return 1
    scenarios = [SCENARIOS[name] for name in SCENARIOS if name in options.scenarios]
    wantIdle = max([s.params["count"] for s in scenarios if s.kind == "idle"], default=0)
    # nginx and twisted_rproxy need one descriptor per idle connection,
    # haproxy two; the harness's own client holds one per connection too.
    limit = raiseFileLimit(2 * wantIdle + 4096)
    for scenario in scenarios:
        if scenario.kind == "idle" and scenario.params["count"] > limit - 1024:
            say(f"note: RLIMIT_NOFILE is {limit} and cannot be raised: "
                f"{scenario.name} will be skipped")
    proxyCpu, loadCpu, pinning = choosePinning(options.proxy_cpu, options.load_cpu)
    if loadCpu is not None:
        pinSelf(loadCpu)
    say(f"pinning: {pinning}")
    connections = max(4096, wantIdle + 1024)
    backend = startBackend(freePort(), loadCpu)
    stream = StreamBackendRunner(freePort(), loadCpu)
    # The throwaway CA's private key goes when the run does.
    certificates = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    try:
        stream.start()
        bench = Bench(options.port or freePort(), backend.port, stream.port, connections,
                      proxyCpu, loadCpu, options.duration, options.quick, limit,
                      options.python, tlsPort=freePort(),
                      certificate=makeCertificate(certificates))
        bench.pypy = "PyPy" in _pythonVersion(options.python or sys.executable)
        if options.defaultProxies:
            bench.onlyScenarios["caddy"] = CADDY_DEFAULT_SCENARIOS
        if options.serve:
            serve(bench, options.serve)
            return 0
        data: Dict[str, Any] = {"meta": machineMeta(pinning, options, proxies),
                                "scenarios": {}}
        if "rproxy" in proxies:
            say(f"twisted_rproxy runs on {data['meta']['versions']['rproxy_python']} "
                f"({data['meta']['rproxy_python']})"
                + (f"; {PYPY_WARMUP} s of warm-up for its JIT before each measurement"
                   if bench.pypy and not options.quick else "")
                + ("; garbage collector: " + (" ".join(
                    f"{name}={value}" for name, value in data["meta"]["pypy_gc_env"].items())
                    or "PyPy's defaults") if bench.pypy else ""))
        data["meta"]["warmup_s"] = {proxy: 0 if options.quick else
                                    PYPY_WARMUP if bench.pypy and proxy in ("rproxy", "bare")
                                    else 1 for proxy in proxies}
        say(f"proxies: {', '.join(proxies)}; {options.duration} s per measurement; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
            "(other work on this machine skews the figures)")
        runScenarios(bench, scenarios, proxies, data)
    finally:
        stream.cleanup()
        backend.cleanup()
        shutil.rmtree(certificates, ignore_errors=True)
    data["targets"] = report.evaluateTargets(data)
    data["meta"]["seconds"] = round(time.monotonic() - started, 1)
    say(report.formatTargets(data["targets"]))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    jsonPath = options.output / f"bench-{stamp}.json"
    report.writeJson(data, jsonPath)
    shutil.copyfile(jsonPath, options.output / "latest.json")
    say(f"JSON: {jsonPath}")
    chartPath = options.output / f"bench-{stamp}.png"
    if options.chart and report.writeChart(data, chartPath):
        shutil.copyfile(chartPath, options.output / "latest.png")
        say(f"chart: {chartPath}")
    say(f"done in {data['meta']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
