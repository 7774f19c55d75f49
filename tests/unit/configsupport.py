"""
Helpers shared by the config, variable, module and plugin unit tests:
compile nginx text with the built-in modules, and put requests through a
compiled config on an in-memory connection, so each test states a config
and the bytes a client sends and checks what the proxy answers.

No reactor runs: the channel gets a L{MemoryReactorClock} and a
L{StringTransport}, per Twisted's test standard.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.harness import RawResponse, parseRawResponses
from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.config.model import CompiledConfig
from twisted_rproxy.http.channel import HTTPChannel
from twisted_rproxy.plugins import builtinModules
from twisted_rproxy.service import loadConfig


def httpConfig(body: str, mainExtra: str = "") -> str:
    """
    @return: a complete config with C{body} inside C{http {}} and access
        logging off (so tests write no files unless they ask to).
    """
    return f"{mainExtra}\nevents {{}}\nhttp {{\n    access_log off;\n{body}\n}}\n"


class ConfigTestCase(SynchronousTestCase):
    """
    A test case with a private prefix directory, config compilation with
    the built-in modules, and an in-memory client.
    """

    def setUp(self) -> None:
        """Make the prefix (with a C{logs} directory, as nginx's has)."""
        self.prefix = tempfile.mkdtemp(prefix="rproxy-unit-")
        os.mkdir(os.path.join(self.prefix, "logs"))
        self.reactor = MemoryReactorClock()

    def tearDown(self) -> None:
        """Remove the prefix."""
        import shutil

        shutil.rmtree(self.prefix, ignore_errors=True)

    def writeFile(self, name: str, text: str) -> str:
        """
        Write a file under the prefix.

        @return: its absolute path.
        """
        path = os.path.join(self.prefix, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def compile(
        self,
        text: str,
        name: str = "nginx.conf",
        modules: Optional[Sequence[Any]] = None,
        globalDirectives: str = "",
    ) -> CompiledConfig:
        """
        Write C{text} as PREFIX/C{name} and compile it.

        @raise ConfigError: as the compiler does.
        """
        path = self.writeFile(name, text)
        return loadConfig(
            path=path,
            prefix=self.prefix,
            modules=builtinModules() if modules is None else modules,
            reactor=self.reactor,
            globalDirectives=globalDirectives,
        )

    def compileHTTP(self, body: str, **kwargs: Any) -> CompiledConfig:
        """
        Compile C{body} as the inside of C{http {}} (see L{httpConfig}).
        """
        return self.compile(httpConfig(body), **kwargs)

    def configError(self, text: str, **kwargs: Any) -> ConfigError:
        """
        @return: the L{ConfigError} compiling C{text} raises (failing the
            test when it compiles).
        """
        return self.assertRaises(ConfigError, self.compile, text, **kwargs)

    def httpError(self, body: str, **kwargs: Any) -> str:
        """
        @return: the text (message in FILE:LINE) of the error compiling
            C{body} inside C{http {}}.
        """
        return str(self.configError(httpConfig(body), **kwargs))

    @property
    def confPath(self) -> str:
        """The path L{compile} writes by default."""
        return os.path.join(self.prefix, "nginx.conf")

    def exchange(
        self,
        config: CompiledConfig,
        data: bytes,
        listener: int = 0,
        peer: Tuple[str, int] = ("10.0.0.7", 5555),
        local: Tuple[str, int] = ("127.0.0.1", 8080),
    ) -> List[RawResponse]:
        """
        Send raw request bytes to one listener of C{config} and parse what
        comes back.

        @return: the responses, in order.
        """
        channel = HTTPChannel(config.listeners[listener], self.reactor)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", *local),
            peerAddress=IPv4Address("TCP", *peer),
        )
        channel.makeConnection(transport)
        channel.dataReceived(data)
        heads = []
        for line in data.split(b"\r\n"):
            if line[:1].isalpha() and b" HTTP/1." in line:
                heads.append(line.startswith(b"HEAD "))
        return parseRawResponses(transport.value(), heads)

    def get(
        self,
        config: CompiledConfig,
        path: str = "/",
        host: Optional[str] = "localhost",
        headers: Sequence[Tuple[str, str]] = (),
        method: str = "GET",
        **kwargs: Any,
    ) -> RawResponse:
        """
        One HTTP/1.1 request; C{host=None} sends no Host header (HTTP/1.0
        then, since 1.1 requires one).

        @return: the response.
        """
        version = "HTTP/1.1" if host is not None else "HTTP/1.0"
        lines = [f"{method} {path} {version}"]
        if host is not None:
            lines.append(f"Host: {host}")
        lines += [f"{name}: {value}" for name, value in headers]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        responses = self.exchange(config, data, **kwargs)
        self.assertEqual(len(responses), 1, responses)
        return responses[0]

    def body(self, config: CompiledConfig, path: str = "/", **kwargs: Any) -> str:
        """
        @return: the body of a C{GET path}, checking it answered 200.
        """
        response = self.get(config, path, **kwargs)
        self.assertEqual(response.status, 200, response)
        return response.body.decode("utf-8", "surrogateescape")
