"""
Active health checks over real sockets: three real backends whose
C{/health} a test switches between 200 and 500, one twisted_rproxy
process probing them every second, and each backend's own count of what
it received as the witness of where user requests went.

Nothing waits on a clock: each awaited change (a log line, a count) is
polled with a generous deadline that only bounds a failure.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List

import pytest

from tests.integration.harness import (
    Backend,
    RproxyRunner,
    freePort,
    namedBackends,
    proxyConfig,
    request,
)

DEADLINE = 20.0
"""How long any awaited event may take before the test fails."""


@pytest.fixture
def backends() -> Iterator[List[Backend]]:
    """
    Three fresh backends called a, b and c (fresh, since a test changes
    what their C{/health} answers).
    """
    with namedBackends("abc") as started:
        yield started


def proxyFor(backends: List[Backend], rproxyRunner: Any) -> RproxyRunner:
    """
    @return: a running proxy balancing C{/} over the three backends and
        C{/solo/} over c alone, both checked every second (two failures
        out, two passes back in), logging at C{warn}.
    """
    a, b, c = (backend.address for backend in backends)
    groups = f"""
    match healthy {{
        status 200;
        header Content-Type ~ json;
        body ~ '"status": "ok"';
    }}
    upstream app {{
        server {a};
        server {b};
        server {c};
    }}
    upstream solo {{
        server {c};
    }}"""
    locations = """
        location / {
            proxy_pass http://app;
            health_check interval=1s fails=2 passes=2 uri=/health match=healthy;
        }
        location /solo/ {
            proxy_pass http://solo/;
            health_check interval=1s uri=/health;
        }"""
    conf = proxyConfig(freePort(), locations, groups, mainExtra="error_log logs/error.log warn;")
    return rproxyRunner(conf)  # type: ignore[no-any-return]


def counts(backend: Backend) -> Dict[str, Dict[str, int]]:
    """
    @return: what C{backend} received, by path, and its C{/health}
        answers, by status (asked of the backend directly).
    """
    response = request(backend.port, path="/counts")
    assert response.status == 200
    return response.json()  # type: ignore[no-any-return]


def waitFor(condition: Callable[[], bool], what: str) -> None:
    """
    Poll C{condition} until it holds, failing after L{DEADLINE}.
    """
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def split(proxy: RproxyRunner, n: int, path: str = "/user") -> Dict[str, int]:
    """
    @return: how many of C{n} user requests each backend answered.
    """
    names = []
    for _ in range(n):
        response = request(proxy.port, path=path)
        assert response.status == 200, response
        names.append(response.json()["name"])
    return dict(Counter(names))


def logged(proxy: RproxyRunner, backend: Backend, state: str, upstream: str) -> bool:
    """
    @return: whether the error log has a line saying C{backend} became
        C{state} (C{"unhealthy"}, C{"healthy again"}) in group C{upstream}.
    """
    return any(
        f"peer {backend.address} is {state} " in line and f'upstream "{upstream}"' in line
        for line in proxy.errorLog.splitlines()
    )


def setHealth(backend: Backend, status: int) -> None:
    """
    Make C{backend}'s C{/health} answer C{status}.
    """
    assert request(backend.port, path=f"/set-health?status={status}").status == 200


def testFailingPeerLeavesRotationAndReturns(backends: List[Backend], rproxyRunner: Any) -> None:
    """
    When c's C{/health} starts failing, the checks alone take it out
    (after C{fails=2} probes, while no user request is sent), so no user
    request reaches it; once C{/health} is good again it comes back after
    C{passes=2} good probes.
    """
    proxy = proxyFor(backends, rproxyRunner)
    a, b, c = backends
    waitFor(lambda: all(counts(x)["health"].get("200", 0) >= 1 for x in backends),
            "a first probe of every backend")
    assert split(proxy, 30) == {"a": 10, "b": 10, "c": 10}
    userBefore = counts(c)["paths"].get("/user", 0)

    setHealth(c, 500)
    waitFor(lambda: logged(proxy, c, "unhealthy", "app"), "c to be unhealthy")
    assert "health check failed: status 500" in proxy.errorLog
    assert counts(c)["health"].get("500", 0) >= 2
    assert split(proxy, 30) == {"a": 15, "b": 15}
    assert counts(c)["paths"].get("/user", 0) == userBefore

    goodBefore = counts(c)["health"].get("200", 0)
    setHealth(c, 200)
    waitFor(lambda: logged(proxy, c, "healthy again", "app"), "c to be healthy again")
    assert counts(c)["health"].get("200", 0) - goodBefore >= 2
    assert counts(c)["paths"].get("/user", 0) == userBefore
    assert set(split(proxy, 30)) == {"a", "b", "c"}


def testNoLiveUpstreams(backends: List[Backend], rproxyRunner: Any) -> None:
    """
    When every peer of a group fails its checks, requests get 502 with
    "no live upstreams", the group of a single peer included; the peers
    themselves never see those requests.
    """
    proxy = proxyFor(backends, rproxyRunner)
    for backend in backends:
        setHealth(backend, 503)
    waitFor(lambda: all(logged(proxy, x, "unhealthy", "app") for x in backends),
            "every backend to be unhealthy")
    waitFor(lambda: logged(proxy, backends[2], "unhealthy", "solo"), "c to be unhealthy alone")
    before = [counts(x)["paths"].get("/user", 0) for x in backends]
    assert request(proxy.port, path="/user").status == 502
    assert request(proxy.port, path="/solo/user").status == 502
    assert "no live upstreams" in proxy.errorLog
    assert [counts(x)["paths"].get("/user", 0) for x in backends] == before
