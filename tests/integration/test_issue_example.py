# -*- test-case-name: tests.integration.test_issue_example -*-
"""
The issue's example config, run over real sockets: twisted_rproxy (and, as
the reference, nginx) started on that exact text, with only the ports
substituted and the C{events} block nginx requires added, in front of the
recording backend.  Each request checks what the backend saw (the URI, the
protocol version and the forwarding headers each location sets, or does
not) and what the client got (status, body, the server-wide C{add_header
... always}, and a Server header with no version under C{server_tokens
off}).

The unit tests (tests/unit/test_config_compiler.py) prove the text
compiles; this proves it behaves, end to end.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import pytest

from tests.integration.harness import (
    NGINX_PREFIX_PATHS,
    Backend,
    Response,
    ServerRunner,
    freePort,
    request,
)
from tests.issue_example import ISSUE_EXAMPLE


NGINX_PATHS = "http {\n" + NGINX_PREFIX_PATHS
"""For nginx only: keep its logs and temp files inside the prefix rather
than in compiled-in system paths (twisted_rproxy runs the text as is)."""

RunnerFactory = Callable[..., ServerRunner]


def exampleConfig(port: int, backend: Backend, forNginx: bool = False) -> str:
    """
    The issue's config for this run: both backends (127.0.0.1:3000 behind
    the upstream, 127.0.0.1:8000 for /api/) become the test backend, the
    server listens on 127.0.0.1:C{port}, and an C{events} block is added.
    """
    text = (
        ISSUE_EXAMPLE.replace("127.0.0.1:3000", backend.address)
        .replace("127.0.0.1:8000", backend.address)
        .replace("listen 8080;", f"listen 127.0.0.1:{port};")
    )
    if forNginx:
        text = text.replace("http {\n", NGINX_PATHS, 1)
    return "events {}\n" + text


class Example:
    """A running server on the example config, and how to ask it things."""

    def __init__(self, kind: str, port: int, backend: Backend) -> None:
        """
        Remember which server (C{rproxy} or C{nginx}) listens on C{port},
        in front of C{backend}.
        """
        self.kind = kind
        self.port = port
        self.backend = backend

    @property
    def serverHeader(self) -> str:
        """The Server value C{server_tokens off} gives: the bare name."""
        return "nginx" if self.kind == "nginx" else "twisted_rproxy"

    def get(
        self, path: str, host: str = "example.com", headers: Optional[Dict[str, str]] = None
    ) -> Response:
        """
        GET C{path} with C{Host: host}, asserting the headers every
        response of this server must carry (X-Frame-Options, and Server
        without a version).
        """
        response = request(self.port, path=path, host=host, headers=headers)
        assert response.header("X-Frame-Options") == "SAMEORIGIN", (path, response.headers)
        assert response.headerValues("Server") == [self.serverHeader], (path, response.headers)
        return response


@pytest.fixture(params=["rproxy", "nginx"])
def example(request: pytest.FixtureRequest, backend: Backend) -> Example:
    """
    The example served by twisted_rproxy, and by nginx as the reference
    that shows these expectations are nginx's behaviour (skipped where
    nginx is not installed, except under CI).
    """
    kind = request.param
    factory: RunnerFactory = request.getfixturevalue(f"{kind}Runner")
    port = freePort()
    factory(exampleConfig(port, backend, forNginx=kind == "nginx"))
    return Example(kind, port, backend)


def sent(response: Response) -> Dict[str, List[str]]:
    """What the backend received: its header values by lower-cased name."""
    headers: Dict[str, List[str]] = {}
    for name, value in response.json()["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    return headers


def testRootLocationForwardsClientDetails(example: Example) -> None:
    """
    C{location /}: the backend gets the client's Host, X-Real-IP, the
    client's X-Forwarded-For with the client address appended, and the
    scheme, over HTTP/1.1 with no Connection header (the keepalive
    recipe); the client gets the backend's 200, with X-Frame-Options and
    a versionless Server header.
    """
    response = example.get("/", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.status == 200
    echo: Dict[str, Any] = response.json()
    assert (echo["uri"], echo["version"]) == ("/", "HTTP/1.1")
    headers = sent(response)
    assert headers["host"] == ["example.com"]
    assert headers["x-real-ip"] == ["127.0.0.1"]
    assert headers["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert "connection" not in headers
    other = example.get("/page?q=1", host="www.example.com")
    assert other.json()["uri"] == "/page?q=1"
    assert sent(other)["host"] == ["www.example.com"]
    assert sent(other)["x-forwarded-for"] == ["127.0.0.1"]


def testRootLocationKeepsBackendConnectionsAlive(example: Example) -> None:
    """
    C{keepalive 32} with C{proxy_http_version 1.1} and C{Connection ""}:
    consecutive requests from separate clients reuse one backend
    connection, as the backend's connection id and request counter show.
    """
    echoes = [example.get(f"/ka/{i}").json() for i in range(5)]
    assert len({echo["connection"] for echo in echoes}) == 1
    counts = [echo["requests_on_connection"] for echo in echoes]
    assert counts == list(range(counts[0], counts[0] + 5))


def testApiLocationStripsPrefix(example: Example) -> None:
    """
    C{location /api/} with C{proxy_pass http://127.0.0.1:8000/}: C{/api/x}
    reaches the backend as C{/x}.  The location sets no proxy_set_header
    of its own and the server level sets none, so none of C{location /}'s
    apply: nginx's defaults go out instead (Host is the proxy_pass
    address, HTTP/1.0, C{Connection: close}, no X-Real-IP).
    """
    response = example.get("/api/x?y=1")
    assert response.status == 200
    echo = response.json()
    assert (echo["uri"], echo["version"]) == ("/x?y=1", "HTTP/1.0")
    headers = sent(response)
    assert headers["host"] == [example.backend.address]
    assert headers["connection"] == ["close"]
    assert "x-real-ip" not in headers
    assert "x-forwarded-for" not in headers


def testEventsLocation(example: Example) -> None:
    """
    C{location /events} (unbuffered): proxied to the upstream with the
    URI unchanged and, as it sets no headers either, the defaults: Host
    is the upstream's name, HTTP/1.0, C{Connection: close}, no
    forwarding headers.  The client gets the body whole with
    X-Frame-Options.
    """
    response = example.get("/events?since=7")
    assert response.status == 200
    echo = response.json()
    assert (echo["uri"], echo["version"]) == ("/events?since=7", "HTTP/1.0")
    headers = sent(response)
    assert headers["host"] == ["backend"]
    assert headers["connection"] == ["close"]
    assert "x-real-ip" not in headers


def testHealthAnsweredByTheProxy(example: Example) -> None:
    """
    C{location = /health} answers C{200 "ok\\n"} itself, with the
    server's C{add_header ... always} and the versionless Server header.
    """
    response = example.get("/health")
    assert (response.status, response.body) == (200, b"ok\n")


def testAlwaysHeaderOnErrors(example: Example) -> None:
    """
    C{always} puts X-Frame-Options on error statuses too (without it,
    nginx adds it only to 2xx and 3xx): a backend's 404 and 503 relayed
    through C{location /} both carry it, with their own bodies.
    """
    response = example.get("/status/404")
    assert (response.status, response.body) == (404, b"status 404\n")
    response = example.get("/status/503")
    assert (response.status, response.body) == (503, b"status 503\n")
