# -*- test-case-name: tests.unit.test_config_compiler -*-
"""
Turns a parsed directive tree into a L{CompiledConfig}: checks every
directive against its owner's declaration, merges values from outer to inner
blocks as nginx does, and lets each module build its runtime objects.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import attr

from ..http.routing import LocationSpec, LocationTree, PcreError, ServerNameTable, compilePcre
from ..phases import LOCATION_PHASES, SERVER_PHASES, phaseIndex
from ..variables import ComplexValue, InvalidVariable, UnknownVariable, VariableTable
from .ast import Directive
from .errors import ConfigError
from .model import CompiledConfig, Conf, Listener, ListenAddress, Location, VirtualServer
from .registry import (
    EVENTS,
    HTTP,
    LOCATION,
    MAIN,
    MERGE_INHERIT,
    SERVER,
    DirectiveRegistry,
    DirectiveSpec,
)


@attr.s(slots=True, auto_attribs=True)
class Block:
    """
    One block of the config with its own directive values, before merging.

    @ivar kind: the context name (C{"http"}, C{"server"} ...).
    @ivar directive: the directive that opened it (C{None} for main).
    @ivar values: directive name to parsed value (a list for repeatable
        directives).
    @ivar sources: directive name to the (first) directive that set it.
    @ivar children: nested blocks, in config order.
    """

    kind: str
    directive: Optional[Directive]
    values: Dict[str, Any] = attr.Factory(dict)
    sources: Dict[str, Directive] = attr.Factory(dict)
    children: List["Block"] = attr.Factory(list)

    def childrenOf(self, kind: str) -> List["Block"]:
        """
        @return: the nested blocks of one kind.
        """
        return [c for c in self.children if c.kind == kind]


class Compiler:
    """
    Compiles configs for one set of modules.

    @ivar registry: the L{DirectiveRegistry} of all modules.
    @ivar variables: the L{VariableTable} of this compile.
    @ivar state: per-module objects built during this compile, by module
        name; they end up in L{CompiledConfig.moduleState}.
    """

    def __init__(
        self, modules: Iterable[Any], reactor: Any = None, prefix: Optional[str] = None
    ) -> None:
        """
        Register every module's directives and variables once, so a clash
        between plugins is reported before any config is read.

        @param modules: the L{IProxyModule} providers to compile with.
        @param reactor: given to modules that build runtime objects
            (default: the global reactor, looked up when first asked for, so
            a module never sees C{None}).
        @param prefix: where relative paths resolve (default: the working
            directory).
        @raise ConfigError: two modules declare one directive or variable.
        """
        self.prefix = os.path.abspath(prefix) if prefix else os.getcwd()
        self.modules = sorted(modules, key=lambda m: (m.order, m.name))
        self._reactor = reactor
        self.registry = DirectiveRegistry()
        for module in self.modules:
            for directiveSpec in module.directives():
                self.registry.add(module.name, directiveSpec)
        self._variableSpecs = []
        declaredBy: Dict[Tuple[str, bool], str] = {}
        for module in self.modules:
            for variableSpec in module.variables():
                key = (variableSpec.name.lower(), variableSpec.prefix)
                if key in declaredBy:
                    shown = "$" + variableSpec.name + ("*" if variableSpec.prefix else "")
                    raise ConfigError(
                        f'variable "{shown}" is declared by both module '
                        f'"{declaredBy[key]}" and module "{module.name}"'
                    )
                declaredBy[key] = module.name
                self._variableSpecs.append(variableSpec)

    # -- reading blocks -------------------------------------------------


    @property
    def reactor(self) -> Any:
        """
        The reactor runtime objects (timers, connections) are built on:
        the one given, else the global one, so that the C{rproxy} command,
        which compiles before it runs a reactor, and a test's clock give
        modules the same thing to use.
        """
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def readBlock(
        self, kind: str, opener: Optional[Directive], body: Sequence[Directive]
    ) -> Block:
        """
        Check and parse the directives of one block, recursing into nested
        blocks of declared contexts.
        """
        block = Block(kind, opener)
        for directive in body:
            directiveSpec = self.registry.check(directive, kind)
            if directiveSpec.ignored:
                self.notices.append(
                    f'directive "{directive.name}" has no effect in '
                    f"twisted_rproxy and is ignored in "
                    f"{directive.filename}:{directive.line}"
                )
                continue
            if directiveSpec.block is not None and directiveSpec.block != "raw":
                child = self.readBlock(directiveSpec.block, directive, directive.block or ())
                self._store(block, directiveSpec, directive, directive)
                block.children.append(child)
                continue
            self._store(block, directiveSpec, directive, self._parse(directiveSpec, directive))
        return block

    def _parse(self, directiveSpec: DirectiveSpec, directive: Directive) -> Any:
        """
        Run a directive's parser, locating a plain C{ValueError} at the
        directive so modules need not know about file and line.
        """
        try:
            return directiveSpec.parse(directive)
        except ValueError as e:
            raise directive.error(str(e) or f'invalid value in "{directive.name}" directive')

    def _store(
        self, block: Block, directiveSpec: DirectiveSpec, directive: Directive, value: Any
    ) -> None:
        """
        Record a parsed value in C{block}: repeatable directives
        accumulate, block directives only note where they were, and a
        scalar set twice is nginx's C{is duplicate} error.
        """
        name = directive.name
        if directiveSpec.multiple:
            block.values.setdefault(name, []).append(value)
            block.sources.setdefault(name, directive)
        elif directiveSpec.block is not None and directiveSpec.block != "raw":
            block.sources.setdefault(name, directive)
        else:
            if name in block.values:
                raise directive.error(f'"{name}" directive is duplicate')
            block.values[name] = value
            block.sources[name] = directive

    # -- merging --------------------------------------------------------

    def merge(self, outer: Optional[Conf], block: Block) -> Conf:
        """
        @return: the L{Conf} of C{block}: values inherited from C{outer}
            (those declared L{MERGE_INHERIT}) under its own.
        """
        values: Dict[str, Any] = {}
        sources: Dict[str, Directive] = {}
        if outer is not None:
            for name, value in outer._values.items():
                if self._inherits(name, block.kind):
                    values[name] = value
                    if name in outer.sources:
                        sources[name] = outer.sources[name]
        for name, value in block.values.items():
            values[name] = value
            sources[name] = block.sources[name]
        return Conf(values, self.registry, sources)

    def _inherits(self, name: str, kind: str) -> bool:
        """
        Whether an outer block's value of C{name} flows into a block of
        C{kind}.  A directive that may not be written in C{kind} (a
        server-only C{client_header_timeout} seen from a location) still
        flows in, so that whatever reads a location's L{Conf} sees the
        server's setting rather than the default.
        """
        directiveSpec = self.registry.get(name, kind) or self.registry.get(name)
        return directiveSpec is not None and directiveSpec.merge == MERGE_INHERIT

    # -- services for modules ---------------------------------------------

    def compileValue(self, text: str, directive: Optional[Directive]) -> ComplexValue:
        """
        Compile a value with variables, reporting an unknown one at the
        directive's file:line.
        """
        try:
            return ComplexValue(text, self.variables)
        except UnknownVariable as e:
            raise _error(directive, f'unknown "{e.args[0]}" variable')
        except InvalidVariable as e:
            raise _error(directive, str(e))

    def resolvePath(self, path: str) -> str:
        """
        @return: C{path} made absolute against the prefix (C{-p}), as nginx
            resolves log and pid paths.
        """
        return os.path.join(self.prefix, path)

    def notice(self, message: str) -> None:
        """
        Record a one-line start-up notice.
        """
        self.notices.append(message)

    # -- the whole compile --------------------------------------------------

    def compile(
        self,
        tree: Sequence[Directive],
        filename: str = "<string>",
        globalTree: Sequence[Directive] = (),
    ) -> CompiledConfig:
        """
        Compile a whole config.

        A file holding only http-level blocks (conf.d style: bare
        C{server {}}, C{upstream {}}) is read as the body of an implied
        C{http {}}.

        @param globalTree: main-context directives given outside the file
            (C{-g}); they are read before the file's own, so writing one
            in both places is a duplicate, as in nginx.
        @raise ConfigError: for any problem, located at file:line.
        """
        self.notices: List[str] = []
        self.warnings: List[str] = []
        self.state: Dict[str, Any] = {}
        self.variables = VariableTable(self._variableSpecs)
        self.captureVariables: Set[str] = set()
        self.filename = filename

        if self._isHttpLevelFile(tree):
            self.mainBlock = self.readBlock(MAIN, None, globalTree)
            self.httpBlock = self.readBlock(HTTP, None, tree)
        else:
            self.mainBlock = self.readBlock(MAIN, None, tuple(globalTree) + tuple(tree))
            https = self.mainBlock.childrenOf(HTTP)
            if len(https) > 1:
                raise https[1].directive.error('"http" directive is duplicate')  # type: ignore[union-attr]
            self.httpBlock = https[0] if https else Block(HTTP, None)
        for events in self.mainBlock.childrenOf(EVENTS)[1:]:
            raise events.directive.error('"events" directive is duplicate')  # type: ignore[union-attr]

        self.mainConf = self.merge(None, self.mainBlock)
        self.httpConf = self.merge(None, self.httpBlock)
        self._defineCaptureVariables()
        for module in self.modules:
            module.configure(self)

        servers = [self._buildServer(b) for b in self.httpBlock.childrenOf(SERVER)]
        listeners = self._buildListeners(servers)
        for listener in listeners:
            for module in self.modules:
                # Optional, so plugins written before it keep verifying.
                configureListener = getattr(module, "configureListener", None)
                if configureListener is not None:
                    configureListener(listener, self)
        return CompiledConfig(
            listeners=listeners,
            servers=servers,
            mainConf=self.mainConf,
            httpConf=self.httpConf,
            notices=self.notices,
            warnings=self.warnings,
            moduleState=self.state,
            filename=filename,
            prefix=self.prefix,
            tree=tuple(tree),
        )

    def _defineCaptureVariables(self) -> None:
        """
        Make every named group of a regex location or regex server name a
        variable (C{location ~ ^/u/(?<user>[^/]+)} gives C{$user}), as
        nginx does when it compiles the regex, so values compiled before
        the regex is reached may use it.  A pattern that does not compile
        is left for the routing code to report at its file:line.
        """

        def scanPattern(pattern: str, caseless: bool, directive: Optional[Directive]) -> None:
            """
            Define the named groups of one pattern.
            """
            try:
                regex = compilePcre(pattern, caseless)
            except PcreError:
                return
            for group in regex.regex.groupindex:
                self.defineCapture(group, directive)

        def scanLocations(block: Block) -> None:
            """
            Walk nested locations for regex patterns.
            """
            for child in block.childrenOf(LOCATION):
                assert child.directive is not None
                try:
                    modifier, pattern = _locationArgs(child.directive)
                except ConfigError:
                    continue
                if modifier in ("~", "~*"):
                    scanPattern(pattern, modifier == "~*", child.directive)
                scanLocations(child)

        for server in self.httpBlock.childrenOf(SERVER):
            for name in _serverNames(server.values.get("server_name")):
                if name.startswith("~"):
                    scanPattern(name[1:], True, server.sources.get("server_name"))
            scanLocations(server)

    def defineCapture(self, group: str, directive: Optional[Directive]) -> None:
        """
        Make the named regex group C{group} a variable.  Several regexes
        may share a group name; a name some module or map already defines
        is an error, as in nginx (C{(?<host>...)} would hide C{$host}).

        @param directive: where the regex was written, for the error.
        @raise ConfigError: C{the duplicate "NAME" variable}.
        """
        lowered = group.lower()
        if lowered in self.captureVariables:
            return
        if self.variables.defines(lowered):
            raise _error(directive, f'the duplicate "{lowered}" variable')
        self.captureVariables.add(lowered)
        self.variables.define(lowered, _namedCapture(group))

    def _isHttpLevelFile(self, tree: Sequence[Directive]) -> bool:
        """
        @return: whether C{tree} is a conf.d-style file: its first directive
            that is not main-context is an http-level one, and it has no
            C{http} block.
        """
        for directive in tree:
            if self.registry.get(directive.name, MAIN) is not None:
                continue
            if self.registry.get(directive.name, HTTP) is not None:
                return not any(d.name == "http" for d in tree)
        return False

    def _buildServer(self, block: Block) -> VirtualServer:
        """
        Compile one C{server} block: merge its values, let modules add
        server-level filters, compile its locations into a
        L{LocationTree}, and build the fallback location used before (or
        without) a location match.
        """
        conf = self.merge(self.httpConf, block)
        names = _serverNames(conf.get("server_name")) or ("",)
        server = VirtualServer(names=names, conf=conf, source=block.directive)
        server.listens = list(conf.get("listen") or [ListenAddress("", 80)])
        for module in self.modules:
            module.configureServer(server, self)
        server.requestFilters.sort(key=lambda f: phaseIndex(f.phase))
        for f in server.requestFilters:
            if f.phase not in SERVER_PHASES:
                raise ConfigError(f"filter {f!r} has a location phase but was added to a server")
        specs = [self._locationSpec(child, conf, server, None) for child in block.childrenOf(LOCATION)]
        server.locations = LocationTree(specs)
        fallback = Location("", "", conf, block.directive)
        fallback.server = server
        self._configureLocation(fallback)
        fallback.contentHandler = None
        server.fallbackLocation = fallback
        return server

    def _locationSpec(
        self, block: Block, outer: Conf, server: VirtualServer, parent: Optional[Location]
    ) -> LocationSpec:
        """
        Compile one C{location} block and its nested ones into the
        L{LocationSpec} tree the router matches.
        """
        directive = block.directive
        assert directive is not None
        modifier, pattern = _locationArgs(directive)
        conf = self.merge(outer, block)
        location = Location(modifier, pattern, conf, directive)
        location.server = server
        self._configureLocation(location)
        if location.autoRedirect:
            server.autoRedirects = True
        children = tuple(
            self._locationSpec(child, conf, server, location)
            for child in block.childrenOf(LOCATION)
        )
        return LocationSpec(modifier, pattern, children, location, directive)

    def _configureLocation(self, location: Location) -> None:
        """
        Let every module install its filters and handler in C{location},
        then order the request filters by phase.
        """
        for module in self.modules:
            module.configureLocation(location, self)
        location.requestFilters.sort(key=lambda f: phaseIndex(f.phase))
        for f in location.requestFilters:
            if f.phase not in LOCATION_PHASES:
                raise ConfigError(f"filter {f!r} has a server phase but was added to a location")

    def _buildListeners(self, servers: List[VirtualServer]) -> List[Listener]:
        """
        Group servers by listen address into L{Listener}s, choosing each
        address's default server as nginx does, then fold the specific
        addresses of a port that also has a wildcard into the wildcard's
        listener (see L{_mergeIntoWildcards}).

        @raise ConfigError: a duplicate listen in one server, or two
            default servers for one address.
        """
        groups: Dict[Tuple[str, int, Optional[str]], List[Tuple[ListenAddress, VirtualServer]]] = {}
        for server in servers:
            seen = set()
            for address in server.listens:
                if address.key in seen:
                    raise _error(address.source, f"a duplicate listen {address.display()}")
                seen.add(address.key)
                groups.setdefault(address.key, []).append((address, server))
        built: List[Tuple[Listener, bool]] = []
        for entries in groups.values():
            default = None
            defaultAddress = None
            for address, server in entries:
                if address.defaultServer:
                    if default is not None:
                        raise _error(
                            address.source,
                            f"a duplicate default server for {address.display()}",
                        )
                    default, defaultAddress = server, address
            if default is None:
                defaultAddress, default = entries[0]
            names = []
            for _address, server in entries:
                for name in server.names:
                    names.append(
                        (name, server, server.conf.source("server_name") or server.source)
                    )
            table = ServerNameTable(names, default)
            self.warnings.extend(table.warnings)
            ownSocket = any(_bindsOwnSocket(address) for address, _server in entries)
            listener = Listener(
                defaultAddress,  # type: ignore[arg-type]
                table,
                default,
                servers=[server for _address, server in entries],
                ssl=any(address.ssl for address, _server in entries),
            )
            built.append((listener, ownSocket))
        return _mergeIntoWildcards(built)


_DEFAULT_BACKLOG = attr.fields(ListenAddress).backlog.default


def _bindsOwnSocket(address: ListenAddress) -> bool:
    """
    Whether a specific address must keep its own socket even when a
    wildcard on its port could serve it: nginx sets C{bind} for C{bind}
    itself and for every socket option (C{reuseport}, C{backlog=},
    C{rcvbuf=}, C{deferred} ...), since options only apply to a socket of
    the address's own (C{ngx_http_core_listen}).  C{ssl} and C{http2} are
    not socket options and do not.
    """
    options = [option for option in address.options if option not in ("ssl", "http2")]
    return bool(options) or address.backlog != _DEFAULT_BACKLOG


def _ipLiteral(address: ListenAddress) -> Optional[Tuple[int, str]]:
    """
    @return: the family of an IP C{listen} address and the host as
        C{getsockname} spells it (so C{[0:0::1]} matches a connection to
        C{::1}), or C{None} for a UNIX socket or a host name, which keep
        the socket they have.
    """
    if address.unixPath is not None:
        return None
    if not address.host:
        return socket.AF_INET, "0.0.0.0"
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        return family, socket.inet_ntop(family, socket.inet_pton(family, address.host))
    except (OSError, ValueError):
        return None


_WILDCARDS = ("0.0.0.0", "::")


def _mergeIntoWildcards(built: List[Tuple[Listener, bool]]) -> List[Listener]:
    """
    Bind only the wildcard of a port when it has one, as nginx's
    C{ngx_http_init_listening} does: a specific address of the same family
    and port without C{bind} (or another socket option) gets no socket of
    its own, which would fail with "Address already in use" besides, and
    its servers are reached through the wildcard's
    L{Listener.byLocalAddress} instead.

    @param built: each address's listener, and whether it must keep its
        own socket.
    @return: the listeners that get a socket, in config order.
    """
    wildcards: Dict[Tuple[int, int], Listener] = {}
    for listener, _ownSocket in built:
        found = _ipLiteral(listener.address)
        if found is not None and found[1] in _WILDCARDS:
            wildcards.setdefault((found[0], listener.address.port), listener)
    if not wildcards:
        return [listener for listener, _ownSocket in built]
    listeners = []
    for listener, ownSocket in built:
        found = None if ownSocket else _ipLiteral(listener.address)
        wildcard = None
        if found is not None and found[1] not in _WILDCARDS:
            wildcard = wildcards.get((found[0], listener.address.port))
        if wildcard is None:
            listeners.append(listener)
            continue
        if wildcard.byLocalAddress is None:
            wildcard.byLocalAddress = {}
        wildcard.byLocalAddress[found[1]] = listener  # type: ignore[index]
    return listeners


def _serverNames(lines: Optional[Sequence[Sequence[str]]]) -> Tuple[str, ...]:
    """
    @return: the names of every C{server_name} line of a server, in order.
    """
    return tuple(name for line in lines or () for name in line)


def _namedCapture(group: str) -> Any:
    """
    @return: the getter of a named-capture variable: the group as the
        chosen location's regex matched it, else as the server name's.
    """

    def get(exchange: Any) -> Optional[str]:
        """
        @return: the group's value from the location, else the server name.
        """
        value = exchange.namedCaptures.get(group)
        if value is None:
            value = exchange.serverCaptures.get(group)
        return value

    return get


def _error(directive: Optional[Directive], message: str) -> ConfigError:
    """
    @return: a L{ConfigError} at C{directive}, or unlocated when the
    problem has no single directive (an implied default).
    """
    if directive is None:
        return ConfigError(message)
    return directive.error(message)  # type: ignore[return-value]


_MODIFIERS = ("=", "^~", "~", "~*")


def _locationArgs(directive: Directive) -> Tuple[str, str]:
    """
    Split C{location [=|^~|~|~*] PATTERN} / C{location @name} / C{location
    =/exact} into modifier and pattern, as nginx's C{ngx_http_core_location}.
    """
    args = directive.args
    if len(args) == 2:
        if args[0] not in _MODIFIERS:
            raise directive.error(f'invalid location modifier "{args[0]}"')
        return args[0], args[1]
    if len(args) != 1:
        raise directive.error('invalid number of arguments in "location" directive')
    arg = args[0]
    if arg.startswith("@"):
        return "@", arg[1:]
    for modifier in ("^~", "~*", "=", "~"):
        if arg.startswith(modifier) and len(arg) > len(modifier):
            return modifier, arg[len(modifier):]
    return "", arg
