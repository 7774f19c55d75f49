"""
Smoke tests of the benchmark harness (bench/): the configs it generates
are accepted by twisted_rproxy (and nginx), its report code copes with
missing figures, and one very short real run writes the JSON it promises.
No performance figure is asserted anywhere: speed is measured by running
C{python3 bench/run.py}, never judged by the test suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import configs, report
from bench.load import _ChunkedDecoder, parseH2load, wrkScript
from tests.integration.harness import REPO_ROOT, _subprocessEnv, findNginx

WRK_FIGURES = {"rps", "requests", "p50_ms", "p99_ms", "cpu_percent", "cpu_seconds",
               "rss_mib", "peak_rss_mib", "error_total", "errors", "connections"}
"""What every proxy's entry in a wrk scenario carries."""


def _checkConfig(command: list, prefix: Path) -> subprocess.CompletedProcess:
    """Run a C{-t} config check, returning the finished process."""
    return subprocess.run(command, cwd=str(prefix), env=_subprocessEnv(),
                          capture_output=True, text=True, timeout=60)


class TestConfigs:
    """The generated configs are the ones the benchmark claims to run."""

    def testProxyConfigShape(self) -> None:
        """One worker, keepalive HTTP/1.1 upstream, unbuffered streaming."""
        text = configs.proxyConfig(8080, 9000, 9001, 4096)
        for expected in ("worker_processes 1;", f"keepalive {configs.UPSTREAM_KEEPALIVE};",
                         "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
                         "proxy_buffering off;", "listen 127.0.0.1:8080;",
                         "server 127.0.0.1:9000;", "server 127.0.0.1:9001;"):
            assert expected in text

    def testRproxyAcceptsProxyConfig(self, tmp_path: Path) -> None:
        """twisted_rproxy -t accepts the shared proxy config unchanged."""
        conf = tmp_path / "nginx.conf"
        conf.write_text(configs.proxyConfig(8080, 9000, 9001, 4096))
        result = _checkConfig([sys.executable, "-m", "twisted_rproxy", "-t", "-p",
                               str(tmp_path), "-c", str(conf)], tmp_path)
        assert result.returncode == 0, result.stderr

    def testWebSocketLocations(self, tmp_path: Path) -> None:
        """
        The WebSocket location is the seeds' recipe in the text nginx and
        twisted_rproxy share; twisted_rproxy's copy alone adds the relayed
        location, and accepts it.
        """
        shared = configs.proxyConfig(8080, 9000, 9001, 4096)
        assert f"location {configs.WS_PATH} {{" in shared
        assert "proxy_set_header Connection $connection_upgrade;" in shared
        assert "proxy_websocket_relay" not in shared
        conf = tmp_path / "nginx.conf"
        conf.write_text(configs.proxyConfig(8080, 9000, 9001, 4096, wsRelay=True))
        assert f"location {configs.WS_RELAY_PATH} {{" in conf.read_text()
        result = _checkConfig([sys.executable, "-m", "twisted_rproxy", "-t", "-p",
                               str(tmp_path), "-c", str(conf)], tmp_path)
        assert result.returncode == 0, result.stderr

    def testNginxAcceptsConfigs(self, tmp_path: Path) -> None:
        """nginx -t accepts the proxy and backend configs."""
        nginx = findNginx()
        if nginx is None:
            pytest.skip("nginx is not installed")
        for name, text in (("proxy", configs.proxyConfig(8080, 9000, 9001, 4096)),
                           ("backend", configs.backendConfig(9000, 4096))):
            prefix = tmp_path / name
            (prefix / "logs").mkdir(parents=True)
            conf = prefix / "nginx.conf"
            conf.write_text(text)
            extra = "user root; " if os.geteuid() == 0 else ""
            result = _checkConfig(
                [nginx, "-t", "-p", f"{prefix}/", "-e", str(prefix / "error.log"),
                 "-c", str(conf), "-g", f"{extra}pid {prefix / 'nginx.pid'};"], prefix)
            assert result.returncode == 0, result.stderr

    def testTLSConfigAccepted(self, tmp_path: Path) -> None:
        """
        The proxy config with the HTTPS listener of the TLS scenarios (and
        a certificate made as the harness makes it) passes twisted_rproxy
        -t and, when installed, nginx -t.
        """
        from bench.run import makeCertificate

        certificate = makeCertificate(tmp_path / "tls")
        assert certificate is not None
        text = configs.proxyConfig(8080, 9000, 9001, 4096, tls=(8443, *certificate))
        assert "listen 127.0.0.1:8443 ssl http2;" in text
        conf = tmp_path / "nginx.conf"
        conf.write_text(text)
        (tmp_path / "logs").mkdir()
        result = _checkConfig([sys.executable, "-m", "twisted_rproxy", "-t", "-p",
                               str(tmp_path), "-c", str(conf)], tmp_path)
        assert result.returncode == 0, result.stderr
        nginx = findNginx()
        if nginx is not None:
            extra = "user root; " if os.geteuid() == 0 else ""
            result = _checkConfig(
                [nginx, "-t", "-p", f"{tmp_path}/", "-e", str(tmp_path / "error.log"),
                 "-c", str(conf), "-g", f"{extra}pid {tmp_path / 'nginx.pid'};"], tmp_path)
            assert result.returncode == 0, result.stderr

    def testCaddyConfig(self, tmp_path: Path) -> None:
        """
        Caddy's Caddyfile has the shared config's shape: the backend pool
        keeping L{configs.UPSTREAM_KEEPALIVE} idle connections, the
        streaming path flushed at once, sites that answer any C{Host}
        on 127.0.0.1, and the TLS versions of the others; C{caddy
        validate} accepts it when Caddy is installed (CI installs it).
        """
        from bench.run import makeCertificate

        certificate = makeCertificate(tmp_path / "tls")
        assert certificate is not None
        text = configs.caddyConfig(8080, 9000, 9001, tls=(8443, *certificate))
        for expected in ("admin off", "auto_https off", "http://:8080 {", "https://:8443 {",
                         "bind 127.0.0.1", f"keepalive_idle_conns {configs.UPSTREAM_KEEPALIVE}",
                         f"handle {configs.SSE_PATH}* {{", "flush_interval -1",
                         f"handle {configs.WS_PATH}* {{", "reverse_proxy 127.0.0.1:9000 {",
                         "reverse_proxy 127.0.0.1:9001", "protocols tls1.2 tls1.3",
                         f"tls {certificate[0]} {certificate[1]}"):
            assert expected in text, expected
        assert "https://" not in configs.caddyConfig(8080, 9000, 9001)
        caddy = shutil.which("caddy")
        if caddy is None:
            if os.environ.get("CI"):
                pytest.fail("caddy is not installed: .ci/run installs it")
            pytest.skip("caddy is not installed (apt-get install caddy)")
        path = tmp_path / "Caddyfile"
        path.write_text(text)
        result = subprocess.run(
            [caddy, "validate", "--config", str(path), "--adapter", "caddyfile"],
            cwd=str(tmp_path), capture_output=True, text=True, timeout=60,
            env=dict(os.environ, XDG_DATA_HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path)))
        assert result.returncode == 0, result.stdout + result.stderr

    def testBodies(self, tmp_path: Path) -> None:
        """The backend's files have exactly the advertised sizes."""
        configs.writeBodies(tmp_path)
        for name, size in configs.BODY_SIZES.items():
            assert (tmp_path / name).stat().st_size == size

    def testH2loadSummaryParsed(self) -> None:
        """
        h2load's summary (as nghttp2-client 1.52 prints it) becomes the
        figures of an h2load scenario; output without one is an error.
        """
        text = """\
finished in 4.70s, 425.28 req/s, 123.97KB/s
requests: 2000 total, 2000 started, 1996 done, 1990 succeeded, 6 failed, 4 errored, 0 timeout
status codes: 1990 2xx, 0 3xx, 0 4xx, 0 5xx
                     min         max         mean         sd        +/- sd
time for request:   122.46ms       1.31s    282.76ms    173.43ms    91.45%
time for connect:    16.85ms     29.09ms     21.52ms      5.27ms    75.00%
"""
        figures = parseH2load(text)
        assert figures["rps"] == 425.28 and figures["requests"] == 1990
        assert figures["mean_ms"] == pytest.approx(282.76)
        assert figures["max_ms"] == pytest.approx(1310.0)
        assert figures["error_total"] == 10
        with pytest.raises(RuntimeError):
            parseH2load("nothing here")

    def testTLSListenerOffersHTTP2(self) -> None:
        """The HTTPS listener the h2load scenario uses has http2 on."""
        assert "ssl http2;" in configs.tlsServer((8443, "c.pem", "k.pem"))
        ratio = report.ratios("h2load", {"nginx": {"rps": 10.0}, "rproxy": {"rps": 5.0}})
        assert ratio["rps"] == 0.5

    def testWrkScript(self) -> None:
        """The POST script sets the body size; both print the JSON line."""
        assert "BENCHJSON" in wrkScript() and "POST" not in wrkScript()
        assert 'string.rep("x", 16384)' in wrkScript(16384)


class TestReport:
    """Ratios, tables and targets from a synthetic run."""

    def testRatiosAndTable(self) -> None:
        """Ratios are rproxy/nginx; a failed proxy still gets a row."""
        results = {"nginx": {"rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_percent": 50.0,
                             "rss_mib": 8.0, "peak_rss_mib": 8.0, "error_total": 0},
                   "rproxy": {"rps": 50.0, "p50_ms": 2.0, "p99_ms": 3.0, "cpu_percent": 100.0,
                              "rss_mib": 40.0, "peak_rss_mib": 40.0, "error_total": 0}}
        ratio = report.ratios("wrk", results)
        assert ratio["rps"] == 0.5 and ratio["p99_ms"] == 1.5
        table = report.formatTable({"name": "get1k", "title": "t", "kind": "wrk",
                                    "results": dict(results, haproxy={"error": "boom"}),
                                    "ratio": ratio})
        assert "rproxy/nginx" in table and "failed: boom" in table

    def testRequestsPerCpuSecond(self) -> None:
        """
        Throughput over CPU: nginx at 50 % making 100 req/s costs as much
        per request as a proxy at 100 % making 200, and the table says
        that nginx did not use its core.
        """
        results = {"nginx": {"rps": 100.0, "cpu_percent": 50.0},
                   "rproxy": {"rps": 100.0, "cpu_percent": 100.0}}
        for figures in results.values():
            report.addPerCpuSecond("wrk", figures)
        assert [f["per_cpu_second"] for f in results.values()] == [200.0, 100.0]
        ratio = report.ratios("wrk", results)
        assert ratio["rps"] == 1.0 and ratio["per_cpu_second"] == 0.5
        table = report.formatTable({"name": "get1k", "title": "t", "kind": "wrk",
                                    "results": results, "ratio": ratio})
        assert "note: nginx 50% of its CPU" in table and "rproxy 100%" not in table
        sse = {"events_per_s": 10.0, "cpu_percent": 5.0}
        report.addPerCpuSecond("sse", sse)
        assert "per_cpu_second" not in sse

    def testCaddyTarget(self) -> None:
        """
        The Caddy target is twisted_rproxy's get1k req/s over Caddy's in
        the same run, met from 1.5; unmeasured when Caddy did not run.
        """
        def caddyTarget(results: dict) -> dict:
            data = {"meta": {}, "scenarios": {"get1k": {"results": results}}}
            targets = report.evaluateTargets(data)
            return next(t for t in targets if "Caddy" in t["target"])

        met = caddyTarget({"rproxy": {"rps": 300.0}, "caddy": {"rps": 200.0}})
        assert met["value"] == 1.5 and met["met"] is True
        missed = caddyTarget({"rproxy": {"rps": 290.0}, "caddy": {"rps": 200.0}})
        assert missed["value"] == 1.45 and missed["met"] is False
        skipped = caddyTarget({"rproxy": {"rps": 300.0}, "caddy": {"error": "skipped: x"}})
        assert skipped["value"] is None and skipped["met"] is None

    def testTargetsWithoutFigures(self) -> None:
        """Targets whose scenarios did not run are reported as unmeasured."""
        targets = report.evaluateTargets({"meta": {}, "scenarios": {}})
        assert targets and all(t["value"] is None and t["met"] is None for t in targets)

    def testChunkedDecoder(self) -> None:
        """The SSE client decodes chunked bodies however the bytes are split."""
        raw = b"6\r\ndata: \r\n3\r\n1\n\n\r\n0\r\n\r\n"
        decoder = _ChunkedDecoder()
        assert b"".join(decoder.feed(raw[i:i + 1]) for i in range(len(raw))) == b"data: 1\n\n"
        assert decoder.finished


def testUsableCpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The CPUs the harness pins to are read from /proc where os has no
    sched_getaffinity (PyPy 3.9), and agree with it where it has.
    """
    from bench import run

    cpus = run.usableCpus()
    assert cpus
    if hasattr(os, "sched_getaffinity"):
        assert cpus == sorted(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
        assert run.usableCpus() == cpus


def testQuickRun(tmp_path: Path) -> None:
    """
    C{bench/run.py --quick --duration 1 --scenarios get1k --proxies rproxy}
    runs end to end and writes JSON with the documented keys.  Skipped when
    wrk is missing, except under CI (env CI set), where the harness must
    install it itself as it does on a fresh machine.
    """
    if shutil.which("wrk") is None and not os.environ.get("CI"):
        pytest.skip("wrk is not installed (apt-get install wrk)")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "run.py"), "--quick", "--duration", "1",
         "--scenarios", "get1k", "--proxies", "rproxy,bare", "--no-chart",
         "--python", sys.executable, "--output", str(tmp_path)],
        cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=240,
        env=dict(os.environ, PYPY_GC_NURSERY="32MB"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pinning:" in result.stdout
    data = json.loads((tmp_path / "latest.json").read_text())
    assert {"meta", "scenarios", "targets"} <= set(data)
    assert {"pinning", "versions", "duration_s", "proxies"} <= set(data["meta"])
    assert data["meta"]["rproxy_python"] == sys.executable
    assert data["meta"]["pypy_gc_env"] == {"PYPY_GC_NURSERY": "32MB"}
    scenario = data["scenarios"]["get1k"]
    assert {"name", "kind", "title", "results", "ratio"} <= set(scenario)
    figures = scenario["results"]["rproxy"]
    assert "error" not in figures, figures
    assert WRK_FIGURES <= set(figures)
    assert all(isinstance(figures[k], (int, float)) for k in WRK_FIGURES - {"errors"})
    bare = scenario["results"]["bare"]
    assert "error" not in bare, bare
    assert bare["requests"] > 0 and bare["error_total"] == 0, bare
    assert data["meta"]["warmup_s"] == {"rproxy": 0, "bare": 0}


def testWarmupAndBareRelayScope() -> None:
    """
    Outside C{--quick}, twisted_rproxy and the bare relay get
    C{PYPY_WARMUP} seconds of warm-up on PyPy and 1 s otherwise, nginx
    always 1 s; the bare relay is skipped where it cannot run (HTTPS, HTTP/2,
    workers, the stream backend's paths).
    """
    from bench import run

    bench = run.Bench(1, 2, 3, 100, None, None, 1, False, 1 << 20)
    for proxy, onCPython, onPyPy in [("rproxy", 1, run.PYPY_WARMUP), ("nginx", 1, 1),
                                     ("bare", 1, run.PYPY_WARMUP)]:
        bench.proxyName = proxy
        bench.pypy = False
        assert bench.warmup() == onCPython, proxy
        bench.pypy = True
        assert bench.warmup() == onPyPy, proxy
    bench.quick = True
    assert bench.warmup() == 0
    for name in ("get1k_tls", "get1k_h2", "get1k_2w", "sse", "ws_echo"):
        figures = bench.runOne(run.SCENARIOS[name], "bare")
        assert figures["error"].startswith("skipped"), (name, figures)


def testCaddyDefaultScope() -> None:
    """
    Run by default, Caddy measures only the scenario its target needs
    (so the default run stays under 5 minutes); named in C{--proxies} it
    runs them all; its TLS scenarios get the HTTPS listener the others
    have.
    """
    from bench import run

    assert run.parseArguments([]).defaultProxies
    assert "caddy" in run.parseArguments([]).proxies
    assert not run.parseArguments(["--proxies", "caddy"]).defaultProxies
    bench = run.Bench(1, 2, 3, 100, None, None, 1, False, 1 << 20,
                      certificate=("cert.pem", "key.pem"), tlsPort=4)
    bench.onlyScenarios["caddy"] = run.CADDY_DEFAULT_SCENARIOS
    figures = bench.runOne(run.SCENARIOS["get64k"], "caddy")
    assert figures["error"].startswith("skipped: by default caddy runs get1k only"), figures
    assert bench.spec("caddy").tls == (4, "cert.pem", "key.pem")
    assert bench.spec("haproxy").tls is None


def testQuickCaddyRun(tmp_path: Path) -> None:
    """
    Caddy, named in C{--proxies}, serves the 1 KiB GETs, the SSE streams
    and the HTTPS GETs through the same backends: every request answered,
    every event delivered.  No figure is judged.
    """
    if shutil.which("caddy") is None:
        if os.environ.get("CI"):
            pytest.fail("caddy is not installed: .ci/run installs it")
        pytest.skip("caddy is not installed (apt-get install caddy)")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "run.py"), "--quick", "--duration", "1",
         "--scenarios", "get1k,get1k_tls,sse", "--proxies", "caddy", "--no-chart",
         "--output", str(tmp_path)],
        cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["meta"]["versions"]["caddy"]
    for name in ("get1k", "get1k_tls"):
        figures = data["scenarios"][name]["results"]["caddy"]
        assert "error" not in figures, (name, figures)
        assert figures["requests"] > 0 and figures["error_total"] == 0, (name, figures)
    sse = data["scenarios"]["sse"]["results"]["caddy"]
    assert sse["events"] == sse["expected"] > 0, sse


def testQuickWebSocketRun(tmp_path: Path) -> None:
    """
    The two WebSocket scenarios run end to end on nginx and twisted_rproxy
    (tunnel, then relay on twisted_rproxy's side): every proxy echoed
    messages with no error, over the path the scenario names.  No figure
    is judged.
    """
    if findNginx() is None and not os.environ.get("CI"):
        pytest.skip("nginx is not installed")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "run.py"), "--quick", "--duration", "1",
         "--scenarios", "ws_echo,ws_echo_relay", "--proxies", "nginx,rproxy", "--no-chart",
         "--python", sys.executable, "--output", str(tmp_path)],
        cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "latest.json").read_text())
    paths = {}
    for name in ("ws_echo", "ws_echo_relay"):
        for proxy, figures in data["scenarios"][name]["results"].items():
            assert "error" not in figures, (name, proxy, figures)
            assert figures["messages"] > 0 and figures["errors"] == 0, (name, proxy, figures)
            paths[name, proxy] = figures["path"]
    assert paths == {("ws_echo", "nginx"): "/ws", ("ws_echo", "rproxy"): "/ws",
                     ("ws_echo_relay", "nginx"): "/ws", ("ws_echo_relay", "rproxy"): "/wsrelay"}


def _benchScript(*args: str) -> str:
    """Run a bench/ script with C{args}; return its output."""
    result = subprocess.run(
        [sys.executable, *args], cwd=str(REPO_ROOT), env=_subprocessEnv(),
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def testIdleMemory() -> None:
    """
    C{bench/idlemem.py} holds its idle connections over real sockets and
    reports bytes per connection, the holders by line, and RSS growth.
    """
    out = _benchScript("bench/idlemem.py", "--connections", "20", "--top", "3")
    assert "20 idle connections held (0 failed), 20 channels open" in out, out
    if sys.implementation.name == "cpython":  # PyPy has no tracemalloc
        assert "python bytes per connection (tracemalloc): " in out, out
        assert out.count(" B/conn ") == 3, out
    assert "RSS growth per connection: " in out, out


def testIdleMemoryProxied() -> None:
    """C{--proxy} sends each GET through a keepalive upstream first."""
    out = _benchScript("bench/idlemem.py", "--connections", "10", "--proxy", "--no-trace")
    assert "10 idle connections held (0 failed), 10 channels open" in out, out
    assert "tracemalloc" not in out.split("\n", 1)[1], out


def testInMemoryCalls() -> None:
    """C{bench/inmemory.py --calls} counts Python calls per request."""
    out = _benchScript("bench/inmemory.py", "--calls", "--requests", "50")
    figure = float(out.split()[0])
    assert figure > 0, out
    assert "Python calls per request (1k, cProfile" in out, out


def testConnects() -> None:
    """
    C{bench/connects.py} opens its connections through the pool and with
    bare system calls, and prints the CPU per connection for each.
    """
    pooled = _benchScript("bench/connects.py", "--connections", "50", "--repeat", "2")
    assert " us CPU per connection (ConnectionPool.connect, best of 2 x 50, " in pooled, pooled
    assert float(pooled.split()[0]) > 0, pooled
    raw = _benchScript("bench/connects.py", "--connections", "50", "--repeat", "1", "--raw")
    assert " us CPU per connection (bare system calls, best of 1 x 50, " in raw, raw
