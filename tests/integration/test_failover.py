"""
Failover over real sockets: real backends (each answering with its name)
killed and restarted mid-run, a backend that accepts and never answers,
C{proxy_next_upstream_timeout}, backup peers, and a large request body
replayed on the next peer, all through one twisted_rproxy process per
test, with C{$upstream_addr} and C{$upstream_status} in response headers
so each request shows every peer it tried.
"""

from __future__ import annotations

import time
from typing import Any, List, Tuple

from tests.integration.harness import (
    Backend,
    RproxyRunner,
    SilentBackend,
    freePort,
    namedBackends,
    proxyConfig,
    request,
    waitUntil,
)

REPORT = """
        add_header X-Addr $upstream_addr always;
        add_header X-Status $upstream_status always;"""
"""Lines a location adds so each response names the peers tried."""


def startProxy(rproxyRunner: Any, locations: str, upstreams: str, **kwargs: Any) -> RproxyRunner:
    """
    @return: a running proxy with C{locations} in its server and
        C{upstreams} in C{http}.
    """
    return rproxyRunner(proxyConfig(freePort(), locations, upstreams, **kwargs))  # type: ignore[no-any-return]


def logHas(proxy: RproxyRunner, text: str) -> bool:
    """
    @return: whether some line of the proxy's error log contains C{text}.
    """
    return any(text in line for line in proxy.errorLog.splitlines())


def testKilledPeerIsLeftAloneForFailTimeout(rproxyRunner: Any) -> None:
    """
    One of three backends is killed (its process stopped, its port
    closed) after 500 of 2,000 sequential GETs: not one request fails, the
    dead peer answers none after that, and it is tried again only once
    per C{fail_timeout} (each try shows in C{$upstream_addr} of the
    request that made it, which then succeeded on another peer).
    """
    failTimeout = 2.0
    with namedBackends("abc") as (a, b, c):
        servers = "\n".join(
            f"        server {backend.address} fail_timeout={int(failTimeout)}s;"
            for backend in (a, b, c)
        )
        proxy = startProxy(rproxyRunner, f"location / {{ {REPORT}\n proxy_pass http://u; }}",
                           f"upstream u {{\n{servers}\n}}")
        records: List[Tuple[float, float, str, str]] = []
        for i in range(2000):
            if i == 500:
                c.stop()
            start = time.monotonic()
            response = request(proxy.port, path=f"/n/{i}")
            end = time.monotonic()
            assert response.status == 200, (i, response)
            records.append((start, end, response.json()["name"], response.header("X-Addr") or ""))
    before, after = records[:500], records[500:]
    assert {name for _s, _e, name, _a in before} == {"a", "b", "c"}
    assert "c" not in {name for _s, _e, name, _a in after}
    tries = [r for r in after if c.address in r[3]]
    assert tries, "the dead peer was never tried, so its failure was never seen"
    assert tries[0] in after[:3]  # round-robin reaches it within three picks
    for first, second in zip(tries, tries[1:]):
        # The proxy marked it failed during `first` and let one request
        # through again only after fail_timeout: `second` ended at least
        # that long after `first` began.
        assert second[1] - first[0] >= failTimeout, (first, second)
    assert all(r[3].endswith((a.address, b.address)) for r in tries)


def testBackupOnlyWhilePrimariesAreDown(rproxyRunner: Any) -> None:
    """
    The backup peer gets nothing while a primary lives, everything once
    both primaries are killed, and nothing again once they are back (on
    the same ports) and their C{fail_timeout} has passed.
    """
    with namedBackends("abc") as (a, b, c):
        proxy = startProxy(rproxyRunner, "location / { proxy_pass http://u; }", f"""
    upstream u {{
        server {a.address} fail_timeout=1s;
        server {b.address} fail_timeout=1s;
        server {c.address} backup;
    }}""")

        def names(count: int) -> List[str]:
            got = [request(proxy.port, path="/").json()["name"] for _ in range(count)]
            return got

        assert set(names(60)) == {"a", "b"}
        a.stop()
        assert set(names(30)) == {"b"}
        b.stop()
        assert set(names(30)) == {"c"}
        with Backend("a", port=a.port), Backend("b", port=b.port):
            waitUntil(lambda: names(1) != ["c"], "a primary to take requests again")
            # The other may still sit out the rest of its fail_timeout;
            # meanwhile the live primary takes everything, the backup none.
            seen: List[str] = []
            waitUntil(lambda: seen.extend(names(10)) or set(seen) >= {"a", "b"},
                      "both primaries to take requests again")
            assert "c" not in seen, seen
            assert set(names(60)) == {"a", "b"}


def testSilentPeerTimesOutThenNextPeer(rproxyRunner: Any) -> None:
    """
    A backend that accepts the request and never answers: only after
    C{proxy_read_timeout} does the request move on to the next peer, which
    answers; both tries show (C{504, 200}).  The silent peer is then out
    for its C{fail_timeout}, so the next request goes straight to the
    live one.  Where C{timeout} is not in C{proxy_next_upstream}, the
    client gets the 504.
    """
    with SilentBackend() as silent, Backend("b") as b:
        group = f"{{ server {silent.address}; server {b.address}; }}"
        proxy = startProxy(rproxyRunner, f"""
        proxy_read_timeout 1s;
        location / {{ {REPORT} proxy_pass http://u; }}
        location /final/ {{ {REPORT} proxy_next_upstream error; proxy_pass http://final; }}""",
                           f"upstream u {group}\n    upstream final {group}")
        start = time.monotonic()
        response = request(proxy.port, path="/slow")
        elapsed = time.monotonic() - start
        assert response.status == 200
        assert response.json()["name"] == "b"
        assert response.header("X-Status") == "504, 200"
        assert response.header("X-Addr") == f"{silent.address}, {b.address}"
        assert elapsed >= 1.0
        assert b"GET /slow HTTP/1.0" in silent.received
        waitUntil(lambda: logHas(proxy, "upstream timed out (110: Connection timed out) "
                                        "while reading response header from upstream"),
                  "the timeout line in the error log")
        again = request(proxy.port, path="/again")
        assert (again.status, again.header("X-Addr")) == (200, b.address)

        final = request(proxy.port, path="/final/")
        assert (final.status, final.header("X-Status")) == (504, "504")
        assert final.header("X-Addr") == silent.address


def testNextUpstreamTimeoutStopsRetries(rproxyRunner: Any) -> None:
    """
    Two silent peers before a live one, 1s read timeouts: with
    C{proxy_next_upstream_timeout 1500ms} the second timeout comes after
    the limit, so the live peer is never tried and the client gets 504;
    without the limit the same request reaches it.
    """
    with SilentBackend() as first, SilentBackend() as second, Backend("c") as c:
        group = f"{{ server {first.address}; server {second.address}; server {c.address}; }}"
        proxy = startProxy(rproxyRunner, f"""
        proxy_read_timeout 1s;
        location / {{ {REPORT} proxy_next_upstream_timeout 1500ms; proxy_pass http://u; }}
        location /nolimit/ {{ {REPORT} proxy_pass http://v; }}""",
                           f"upstream u {group}\n    upstream v {group}")
        limited = request(proxy.port, path="/")
        assert (limited.status, limited.header("X-Status")) == (504, "504, 504")
        assert limited.header("X-Addr") == f"{first.address}, {second.address}"
        unlimited = request(proxy.port, path="/nolimit/")
        assert unlimited.status == 200
        assert unlimited.header("X-Status") == "504, 504, 200"
        assert unlimited.json()["name"] == "c"
        assert (first.connections, second.connections) == (2, 2)


def testLargeBodyReplayedOnRetry(rproxyRunner: Any) -> None:
    """
    A 1 MiB body, over C{client_body_buffer_size} so it is kept in a
    temporary file (the warning says so), is sent again whole to the next
    peer when the first resets after reading it: a POST with
    C{non_idempotent}, and a PUT (idempotent) by default, with
    Content-Length and chunked.
    """
    body = bytes(range(256)) * 4096
    with namedBackends("ab") as (a, b):
        # One group per case, so each starts with the peer that resets.
        group = f"{{ server {a.address}; server {b.address}; }}"
        proxy = startProxy(rproxyRunner, f"""
        client_body_buffer_size 16k;
        client_max_body_size 10m;
        location /post/ {{
            {REPORT}
            proxy_next_upstream error timeout non_idempotent;
            proxy_pass http://post/;
        }}
        location /put/ {{ {REPORT} proxy_pass http://put/; }}
        location /chunked/ {{ {REPORT} proxy_pass http://chunked/; }}""",
                           "\n".join(f"upstream {name} {group}"
                                     for name in ("post", "put", "chunked")),
                           mainExtra="error_log logs/error.log warn;")
        chunks = [body[i:i + 100000] for i in range(0, len(body), 100000)]
        for method, path, sent in [
            ("POST", "/post/reset?only=a", body),
            ("PUT", "/put/reset?only=a", body),
            ("PUT", "/chunked/reset?only=a", chunks),
        ]:
            response = request(proxy.port, method, path, body=sent, timeout=30)
            assert response.status == 200, (method, path, response)
            echo = response.json()
            assert echo["name"] == "b"
            assert echo["body_len"] == len(body)
            assert echo["body"].encode("latin-1") == body
            assert response.header("X-Addr") == f"{a.address}, {b.address}"
        waitUntil(lambda: logHas(proxy, "a client request body is buffered to a temporary file"),
                  "the temporary file warning")
