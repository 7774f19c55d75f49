"""
Fixtures for integration tests: a real backend, and factories for nginx and
twisted_rproxy runners that always stop what they started, however the test
ends.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, List

import pytest

from tests.integration.harness import (
    Backend,
    NginxRunner,
    RproxyRunner,
    ServerRunner,
    findNginx,
    freePort,
)


@pytest.fixture(scope="session")
def nginxBinary() -> str:
    """
    The nginx executable the differential tests compare against.  Missing
    nginx skips them on a developer's machine but fails under CI (env CI
    set), because CI must really run them.
    """
    binary = findNginx()
    if binary is None:
        message = "nginx is not installed (apt-get install nginx-light)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the differential tests")
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """One test backend per module: it is stateless apart from its counters."""
    server = Backend(name="backend").start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def deadPort() -> int:
    """A port nothing listens on, for the upstream-down cases."""
    return freePort()


def _runnerFactory(
    request: pytest.FixtureRequest, make: Callable[..., ServerRunner]
) -> Callable[..., ServerRunner]:
    """
    Wrap a runner constructor so every runner it makes is cleaned up by a
    finalizer, even when start-up raises.
    """
    created: List[ServerRunner] = []

    def cleanupAll() -> None:
        """Stop every runner this test made, in reverse order."""
        for runner in reversed(created):
            runner.cleanup()

    request.addfinalizer(cleanupAll)

    def factory(confText: str, start: bool = True, **kwargs: Any) -> ServerRunner:
        """Make a runner for C{confText}; start it unless C{start=False}."""
        runner = make(confText, **kwargs)
        created.append(runner)
        if start:
            runner.start()
        return runner

    return factory


@pytest.fixture
def nginxRunner(
    request: pytest.FixtureRequest, nginxBinary: str
) -> Callable[..., NginxRunner]:
    """
    Factory: C{nginxRunner(confText, start=True, **kwargs) -> NginxRunner},
    started (waiting for its listen ports) unless C{start=False}.
    """
    return _runnerFactory(  # type: ignore[return-value]
        request, lambda conf, **kw: NginxRunner(conf, binary=nginxBinary, **kw)
    )


@pytest.fixture
def rproxyRunner(request: pytest.FixtureRequest) -> Callable[..., RproxyRunner]:
    """
    Factory: C{rproxyRunner(confText, start=True, **kwargs) -> RproxyRunner};
    start-up failures raise StartupError with stderr and the error log, and
    C{start=False} plus C{runToExit()} gives C{.returncode}/C{.stderr}.
    """
    return _runnerFactory(request, RproxyRunner)  # type: ignore[return-value]
