"""
Differential tests of failover: one config, run once through real nginx
and once through twisted_rproxy (each fresh, on the same port), and the
same requests through each compared on status, C{$upstream_status},
C{$upstream_addr} and the backend that answered.

The cases: a backend that accepts and never answers (left for the next
peer only after C{proxy_read_timeout}, then out for C{fail_timeout}), a
timeout that C{proxy_next_upstream error} does not retry,
C{proxy_next_upstream_timeout} ending the tries, a POST reset by its
peer (not replayed, unless C{non_idempotent}), and a 1 MiB body, spilled
to a temporary file, replayed whole on the next peer.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Tuple

import pytest

from tests.integration.harness import (
    Backend,
    NginxRunner,
    RproxyRunner,
    ServerRunner,
    SilentBackend,
    freePort,
    namedBackends,
    proxyConfig,
    request,
)

BODY = bytes(range(256)) * 4096
"""1 MiB, well over the config's 16k client_body_buffer_size."""

REQUESTS: List[Tuple[str, str, bool]] = [
    ("GET", "/slow/first", False),
    ("GET", "/slow/second", False),
    ("GET", "/final/x", False),
    ("GET", "/limited/x", False),
    ("POST", "/post/reset?only=a", False),
    ("POST", "/postretry/reset?only=a", False),
    ("PUT", "/put/reset?only=a", True),
]
"""(method, path, whether to send L{BODY}) in order; each case has its own
group, so one case's failures do not change another's peers."""


@pytest.fixture(scope="module")
def peers() -> Iterator[Tuple[List[SilentBackend], List[Backend]]]:
    """
    Two silent backends, and real backends called a and b.
    """
    with SilentBackend() as first, SilentBackend() as second:
        with namedBackends("ab") as named:
            yield [first, second], named


def configFor(silent: List[SilentBackend], named: List[Backend]) -> str:
    """
    @return: a config nginx and twisted_rproxy both accept, one group
        and location per case.
    """
    s1, s2 = (peer.address for peer in silent)
    a, b = (backend.address for backend in named)
    groups = f"""
    upstream slow {{ server {s1}; server {b}; }}
    upstream final {{ server {s2}; server {b}; }}
    upstream limited {{ server {s1}; server {s2}; server {b}; }}
    upstream post {{ server {a}; server {b}; }}
    upstream postretry {{ server {a}; server {b}; }}
    upstream put {{ server {a}; server {b}; }}"""
    report = """
            add_header X-Status $upstream_status always;
            add_header X-Addr $upstream_addr always;"""
    locations = f"""
        proxy_read_timeout 1s;
        client_body_buffer_size 16k;
        client_max_body_size 10m;
        location /slow/ {{ {report} proxy_pass http://slow; }}
        location /final/ {{ {report} proxy_next_upstream error; proxy_pass http://final; }}
        location /limited/ {{
            {report}
            proxy_next_upstream_timeout 1500ms;
            proxy_pass http://limited;
        }}
        location /post/ {{ {report} proxy_pass http://post/; }}
        location /postretry/ {{
            {report}
            proxy_next_upstream error timeout non_idempotent;
            proxy_pass http://postretry/;
        }}
        location /put/ {{ {report} proxy_pass http://put/; }}"""
    return proxyConfig(freePort(), locations, groups)


def outcomes(runner: ServerRunner) -> List[Tuple[Any, ...]]:
    """
    Send L{REQUESTS} through C{runner} one after another, then stop it.

    @return: for each: status, C{$upstream_status}, C{$upstream_addr},
        the answering backend's name and the body length it received
        (C{None} for both when no backend answered).
    """
    found = []
    try:
        for method, path, withBody in REQUESTS:
            body = BODY if withBody else (b"data" if method == "POST" else None)
            response = request(runner.port, method, path, body=body, timeout=30)
            name = length = None
            if response.status == 200:
                echo = response.json()
                name, length = echo["name"], echo["body_len"]
            found.append((method, path, response.status, response.header("X-Status"),
                          response.header("X-Addr"), name, length))
    finally:
        runner.stop()
    return found


def testSameFailoverAsNginx(peers: Tuple[List[SilentBackend], List[Backend]],
                            nginxRunner: Callable[..., NginxRunner],
                            rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    Every request has the same outcome through both, and nginx's are the
    ones the issue describes (so the comparison is not of two wrong
    answers).
    """
    silent, named = peers
    confText = configFor(silent, named)
    fromNginx = outcomes(nginxRunner(confText))
    s1, s2 = (peer.address for peer in silent)
    a, b = (backend.address for backend in named)
    assert fromNginx == [
        ("GET", "/slow/first", 200, "504, 200", f"{s1}, {b}", "b", 0),
        ("GET", "/slow/second", 200, "200", b, "b", 0),
        ("GET", "/final/x", 504, "504", s2, None, None),
        ("GET", "/limited/x", 504, "504, 504", f"{s1}, {s2}", None, None),
        ("POST", "/post/reset?only=a", 502, "502", a, None, None),
        ("POST", "/postretry/reset?only=a", 200, "502, 200", f"{a}, {b}", "b", 4),
        ("PUT", "/put/reset?only=a", 200, "502, 200", f"{a}, {b}", "b", len(BODY)),
    ]
    fromRproxy = outcomes(rproxyRunner(confText))
    assert fromRproxy == fromNginx


CONFIG_ERRORS = [
    ("resolver ns.invalid;", 'host not found in resolver "ns.invalid"'),
    ("resolver 127.0.0.1:0;", 'invalid port in resolver "127.0.0.1:0"'),
    ("resolver 127.0.0.1 valid=x;", "invalid parameter: valid=x"),
    ("resolver 127.0.0.1 ipv6=maybe;", "invalid parameter: ipv6=maybe"),
    ("resolver valid=5s;", "no name servers defined"),
    ("upstream u { zone u lots; server 127.0.0.1:1; }", 'invalid zone size "lots"'),
]
"""http-level lines nginx 1.22 refuses, and its words for each."""


@pytest.mark.parametrize("line,message", CONFIG_ERRORS, ids=[m for _l, m in CONFIG_ERRORS])
def testSameConfigErrorsAsNginx(line: str, message: str,
                                nginxRunner: Callable[..., NginxRunner],
                                rproxyRunner: Callable[..., RproxyRunner]) -> None:
    """
    A bad C{resolver} or C{zone} stops both at start-up with the same
    message, at the same file and line.
    """
    confText = proxyConfig(freePort(), "location / { return 204; }", "    " + line)
    for runner in (nginxRunner(confText, start=False), rproxyRunner(confText, start=False)):
        assert runner.runToExit(timeout=30) == 1
        found = [text for text in runner.stderr.splitlines() if message in text]
        assert found, (runner.label, runner.stderr)
        assert found[0].rstrip().endswith("nginx.conf:12"), found[0]
