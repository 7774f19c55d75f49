# -*- test-case-name: tests.unit.test_config_compiler -*-
"""
The runtime form of a config: servers, locations and listeners, built once
at load and never changed, so in-flight requests keep the config they began
with when a reload swaps in a new one.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attr

from .ast import Directive
from .registry import DirectiveRegistry


class Conf:
    """
    The merged directive values that apply to one block: its own settings
    over those inherited from outer blocks, with declared defaults beneath.
    """

    __slots__ = ("_values", "_registry", "sources", "get")

    def __init__(
        self,
        values: Mapping[str, Any],
        registry: DirectiveRegistry,
        sources: Mapping[str, Directive],
    ) -> None:
        """
        @param values: directive name to value, inherited ones included.
        @param registry: gives defaults for unset directives.
        @param sources: directive name to the directive that set it.
        """
        self._values = dict(values)
        self._registry = registry
        self.sources = dict(sources)
        #: C{get(name)}: the value of directive C{name} here, or its
        #: default.  A dict's own lookup, so a request's several lookups
        #: are C calls, not Python ones; a default is fetched from the
        #: registry on first use and kept (L{_Lookup}).
        self.get: Callable[[str], Any] = _Lookup(self._values, registry).__getitem__

    def isSet(self, name: str) -> bool:
        """
        @return: whether this block or an outer one sets C{name}.
        """
        return name in self._values

    def source(self, name: str) -> Optional[Directive]:
        """
        @return: the directive that set C{name}, for error messages.
        """
        return self.sources.get(name)


class _Lookup(dict):  # type: ignore[type-arg]
    """
    A block's directive values and, once asked for, the defaults of those
    it leaves unset (C{None} for a name no module declares, as
    L{DirectiveRegistry.defaultOf} says).
    """

    __slots__ = ("_registry",)

    def __init__(self, values: Mapping[str, Any], registry: DirectiveRegistry) -> None:
        super().__init__(values)
        self._registry = registry

    def __missing__(self, name: str) -> Any:
        value = self[name] = self._registry.defaultOf(name)
        return value


@attr.s(slots=True, auto_attribs=True)
class Location:
    """
    A compiled C{location} block.

    @ivar modifier: C{""}, C{"="}, C{"^~"}, C{"~"}, C{"~*"} or C{"@"}.
    @ivar pattern: the prefix, exact path, regex or name.
    @ivar conf: the merged directive values.
    @ivar requestFilters: phase filters, in run order.
    @ivar responseFilters: response filters, in run order.
    @ivar contentHandler: the terminal handler, or C{None} (404).
    @ivar errorPages: what replaces an error reply, set by a module (an
        object with C{handles(status)} and C{redirect(exchange, status)}),
        or C{None}.
    @ivar upgradeHandler: the L{twisted_rproxy.interfaces.IUpgradeHandler}
        that takes over after a backend's 101, set by a module, or C{None}
        for a byte tunnel.
    @ivar server: the L{VirtualServer} this location belongs to.
    """

    modifier: str
    pattern: str
    conf: Conf
    source: Optional[Directive] = None
    requestFilters: List[Any] = attr.Factory(list)
    responseFilters: List[Any] = attr.Factory(list)
    contentHandler: Any = None
    logSinks: List[Any] = attr.Factory(list)
    errorPages: Any = None
    upgradeHandler: Any = None
    autoRedirect: bool = False
    server: Any = None

    @property
    def name(self) -> str:
        """
        The location as written, for logs: C{"= /health"}, C{"/api/"}.
        """
        return f"{self.modifier} {self.pattern}".strip()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ListenAddress:
    """
    One C{listen} directive.

    @ivar host: the address to bind, C{""} for all IPv4 addresses.
    @ivar port: the port, 0 for a UNIX socket.
    @ivar unixPath: the socket path for C{listen unix:PATH}.
    @ivar defaultServer: C{default_server} was given.
    @ivar options: other flags as written (C{ssl}, C{reuseport}, C{rcvbuf=}).
    """

    host: str
    port: int
    unixPath: Optional[str] = None
    defaultServer: bool = False
    backlog: int = 511
    options: Tuple[str, ...] = ()
    source: Optional[Directive] = attr.ib(default=None, eq=False)

    @property
    def ssl(self) -> bool:
        """
        Whether C{ssl} was given: connections on this address speak TLS.
        """
        return "ssl" in self.options

    @property
    def http2(self) -> bool:
        """
        Whether C{http2} was given: HTTP/2 is offered on this address.
        """
        return "http2" in self.options

    @property
    def key(self) -> Tuple[str, int, Optional[str]]:
        """
        What identifies the socket: servers with the same key share it.
        """
        return (self.host, self.port, self.unixPath)

    def endpointDescription(self) -> str:
        """
        @return: a Twisted server endpoint string for this address.
        """
        if self.unixPath is not None:
            path = self.unixPath.replace(":", "\\:")
            return f"unix:{path}:backlog={self.backlog}"
        if ":" in self.host:
            host = self.host.replace(":", "\\:")
            return f"tcp6:{self.port}:interface={host}:backlog={self.backlog}"
        if self.host:
            return f"tcp:{self.port}:interface={self.host}:backlog={self.backlog}"
        return f"tcp:{self.port}:backlog={self.backlog}"

    def display(self) -> str:
        """
        @return: the address as nginx prints it.
        """
        if self.unixPath is not None:
            return f"unix:{self.unixPath}"
        host = self.host or "0.0.0.0"
        if ":" in host:
            return f"[{host}]:{self.port}"
        return f"{host}:{self.port}"


@attr.s(slots=True, auto_attribs=True)
class VirtualServer:
    """
    A compiled C{server} block.

    @ivar names: its C{server_name}s as written; the first is
        C{$server_name}.
    @ivar locations: a L{twisted_rproxy.http.routing.LocationTree}.
    @ivar requestFilters: server-level phase filters (post-read and
        server-rewrite), run before a location is chosen.
    @ivar fallbackLocation: used for responses made before a location is
        chosen (bad requests) and when no location matches.
    @ivar autoRedirects: whether any location asks for nginx's
        C{auto_redirect}, so requests skip that check when none does.
    """

    names: Tuple[str, ...]
    conf: Conf
    source: Optional[Directive] = None
    locations: Any = None
    listens: List[ListenAddress] = attr.Factory(list)
    requestFilters: List[Any] = attr.Factory(list)
    fallbackLocation: Optional[Location] = None
    autoRedirects: bool = False

    @property
    def primaryName(self) -> str:
        """
        The value of C{$server_name}.
        """
        return self.names[0] if self.names else ""


@attr.s(slots=True, auto_attribs=True)
class Listener:
    """
    One listening socket and the virtual servers reachable through it.

    A wildcard socket (C{listen 80}, C{listen [::]:80}) also serves the
    specific addresses of the same port that were not given their own
    socket (C{listen 127.0.0.1:80} without C{bind}), because nginx binds
    only the wildcard then (C{ngx_http_init_listening}) and picks each
    connection's servers by its local address (C{ngx_http_init_connection}).

    @ivar address: where to listen (the first C{listen} that named it).
    @ivar serverNames: a L{twisted_rproxy.http.routing.ServerNameTable}.
    @ivar defaultServer: the server for unknown or missing Host.
    @ivar byLocalAddress: for a wildcard socket with specific addresses
        merged into it, each such address (as C{getsockname} spells it) to
        the L{Listener} holding that address's own servers and default
        server; C{None} otherwise, so that connections to the common
        single-address socket pay nothing to look it up.
    @ivar servers: every server that listens on this address, in config
        order.
    @ivar ssl: connections speak TLS: some C{listen} of this address says
        C{ssl} (nginx enables it for the address when any one does).
    @ivar tls: the L{twisted_rproxy.tls.ListenerTLS} that terminates TLS
        for this socket, set by the ssl module when C{ssl} is; else C{None}.
    @ivar http2: HTTP/2 is offered (ALPN C{h2} with TLS, prior knowledge
        without): set by the http2 module from C{listen ... http2} or the
        default server's C{http2 on}.
    """

    address: ListenAddress
    serverNames: Any
    defaultServer: VirtualServer
    byLocalAddress: Optional[Dict[str, "Listener"]] = None
    servers: List[VirtualServer] = attr.Factory(list)
    ssl: bool = False
    tls: Any = None
    http2: bool = False

    def forLocalAddress(self, host: str) -> "Listener":
        """
        Choose the servers for a connection accepted on this socket, as
        nginx does with the connection's local address.

        @param host: the connection's local address (C{getHost().host}).
        @return: the listener of the specific address C{host} when one was
            merged into this wildcard socket, else this listener.
        """
        views = self.byLocalAddress
        if views is None:
            return self
        return views.get(host, self)


@attr.s(slots=True, auto_attribs=True)
class CompiledConfig:
    """
    Everything the running proxy needs, built from one config.

    @ivar listeners: one per socket to bind (see L{Listener.byLocalAddress}).
    @ivar servers: every virtual server, in config order.
    @ivar mainConf: the main-context values (C{pid}, C{daemon} ...).
    @ivar httpConf: the http-context values.
    @ivar notices: one line per directive accepted with no effect.
    @ivar warnings: conflicts nginx also only warns about.
    @ivar moduleState: per-module runtime objects, by module name.
    @ivar filename: the main config file.
    @ivar prefix: where relative paths resolve (nginx C{-p}).
    @ivar tree: the parsed directives it was compiled from (for C{-T}).
    """

    listeners: List[Listener]
    servers: List[VirtualServer]
    mainConf: Conf
    httpConf: Conf
    notices: List[str] = attr.Factory(list)
    warnings: List[str] = attr.Factory(list)
    moduleState: Dict[str, Any] = attr.Factory(dict)
    filename: str = "<string>"
    prefix: str = "."
    tree: Tuple[Directive, ...] = ()

    def stateOf(self, moduleName: str) -> Any:
        """
        @return: what module C{moduleName} stored while compiling.
        """
        return self.moduleState.get(moduleName)
