# -*- test-case-name: tests.integration.test_embedding -*-
"""
Embedding: build a proxy from config text, a file or a compiled config, as
an C{IService} to add to an Application or as a protocol factory for any
endpoint.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Set

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.task import LoopingCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from .config.compiler import Compiler
from .config.model import CompiledConfig, Listener
from .config.parser import parseFile, parseString
from .errorlog import ErrorLogObserver
from .http.channel import HTTPChannel
from .listener import Inherited, endpointFor
from .plugins import loadModules

__all__ = ["ProxyFactory", "ProxyService", "loadConfig", "makeProxyService"]


class ProxyFactory(Factory):
    """
    Builds L{HTTPChannel}s for one listener; listen with it on any Twisted
    server endpoint.

    @ivar listener: the L{Listener} new connections use; replaced on reload
        (connections already open keep the one they started with).
    """

    noisy = False

    def __init__(self, listener: Listener, reactor: Any = None) -> None:
        """
        @param listener: the listener whose config new connections use.
        @param reactor: the reactor channels schedule timers on.
        """
        self.listener = listener
        self._reactor = reactor
        # A plain set (a weak one costs a weakref per connection): each
        # channel leaves it in its connectionLost.
        self.channels: Set[HTTPChannel] = set()
        self._tlsFactory: Any = None

    def buildProtocol(self, addr: Any) -> Any:
        """
        @return: a channel bound to the current config; on a C{listen ...
            ssl} socket, wrapped in TLS (see L{_tlsProtocol}).
        """
        listener = self.listener
        channel: Any
        if listener.http2:
            # HTTP/1.1 or HTTP/2, by ALPN or the client's preface.
            from .http.negotiate import ProtocolSelector

            channel = ProtocolSelector(listener, self._reactor, self)
        else:
            channel = HTTPChannel(listener, self._reactor)
        channel.factory = self
        self.channels.add(channel)
        if listener.tls is not None:
            return self._tlsProtocol(channel)
        return channel

    def _tlsProtocol(self, channel: Any) -> Any:
        """
        Wrap C{channel} in Twisted's TLS protocol.  The wrapping factory is
        made once and asks this factory for the listener's TLS contexts on
        each connection, so a reload's new certificates reach new
        connections while the socket stays.

        @return: the C{TLSMemoryBIOProtocol} to give the transport.
        """
        channel.scheme = "https"
        tlsFactory = self._tlsFactory
        if tlsFactory is None:
            from .tls import ServerTLSFactory

            tlsFactory = self._tlsFactory = ServerTLSFactory(
                _CurrentListenerTLS(self), self, clock=self._reactor
            )
        return tlsFactory.protocol(tlsFactory, channel)

    def openChannels(self) -> List[HTTPChannel]:
        """
        @return: the connections still open.
        """
        return [c for c in list(self.channels) if c.transport is not None and not c.lost]


@implementer(IOpenSSLServerConnectionCreator)
class _CurrentListenerTLS:
    """
    Makes each TLS connection with the contexts of the listener a
    L{ProxyFactory} has now (they change on reload).
    """

    def __init__(self, factory: ProxyFactory) -> None:
        """
        @param factory: the factory whose C{listener.tls} makes connections.
        """
        self._factory = factory

    def serverConnectionForTLS(self, protocol: Any) -> Any:
        """
        @return: the listener's new OpenSSL connection for C{protocol}.
        """
        return self._factory.listener.tls.serverConnectionForTLS(protocol)


def loadConfig(
    path: Optional[str] = None,
    text: Optional[str] = None,
    prefix: Optional[str] = None,
    modules: Optional[Sequence[Any]] = None,
    reactor: Any = None,
    globalDirectives: str = "",
    tree: Optional[Sequence[Any]] = None,
) -> CompiledConfig:
    """
    Parse and compile a config file or text.

    @param path: a config file (includes resolve against its directory).
    @param text: config text, when there is no file.
    @param tree: an already parsed config (the directives of C{path},
        includes expanded), compiled as it is without reading any file.
    @param prefix: where relative log and pid paths resolve (nginx C{-p});
        default the config file's directory, or the working directory.
    @param modules: the feature modules; default every installed plugin.
    @param globalDirectives: main-context directives from C{-g}.
    @raise twisted_rproxy.config.errors.ConfigError: for any problem.
    """
    if modules is None:
        modules = loadModules()
    if tree is not None:
        filename = path or "<string>"
        if prefix is None:
            prefix = os.path.dirname(os.path.abspath(filename)) if path else os.getcwd()
    elif path is not None:
        tree = parseFile(path)
        filename = path
        if prefix is None:
            prefix = os.path.dirname(os.path.abspath(path))
    else:
        tree = parseString(text or "", "<string>", includeBase=prefix)
        filename = "<string>"
    globalTree = parseString(globalDirectives, "command line") if globalDirectives else ()
    return Compiler(modules, reactor, prefix).compile(tree, filename, globalTree)


class ProxyService(MultiService):
    """
    Every listener of a config as one service; L{reload} swaps in a new
    config without dropping the sockets that stay.
    """

    log = Logger()

    def __init__(
        self,
        config: CompiledConfig,
        reactor: Any = None,
        defaultErrorLog: Optional[str] = None,
        inherited: Optional[Inherited] = None,
    ) -> None:
        """
        @param defaultErrorLog: the error log file when the config names
            none (see L{ErrorLogObserver.fromConfig}).
        @param inherited: listening sockets made by a master process, by
            address; those addresses are served on them instead of new
            sockets (see L{twisted_rproxy.master}).
        """
        super().__init__()
        self.defaultErrorLog = defaultErrorLog
        self._inherited = inherited
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.config = config
        self.factories: Dict[Any, ProxyFactory] = {}
        self._listening: Dict[Any, StreamServerEndpointService] = {}
        self._errorLog: Optional[ErrorLogObserver] = None
        for listener in config.listeners:
            self._addListener(listener)

    def _addListener(self, listener: Listener) -> None:
        """
        Listen for C{listener} (at once when this service is running).

        @raise Exception: when the socket cannot be bound; nothing of the
            listener is kept then.
        """
        key = listener.address.key
        factory = ProxyFactory(listener, self._reactor)
        endpoint = endpointFor(self._reactor, listener.address, self._inherited)
        service = StreamServerEndpointService(endpoint, factory)
        service._raiseSynchronously = True
        service.setName("listen " + listener.address.display())
        try:
            service.setServiceParent(self)
        except BaseException:
            if service.parent is not None:
                service.disownServiceParent()
            raise
        self.factories[key] = factory
        self._listening[key] = service

    def startService(self) -> None:
        """
        Start the error log, report notices, then listen.
        """
        self._errorLog = ErrorLogObserver.fromConfig(self.config, self.defaultErrorLog)
        if self._errorLog is not None:
            self._errorLog.start()
        for line in self.config.notices + self.config.warnings:
            self.log.warn("{line}", line=line)
        super().startService()
        for check in _healthChecks(self.config):
            check.start()

    #: Seconds a graceful stop waits for in-flight requests when the config
    #: sets no worker_shutdown_timeout (nginx's has no default; a bound
    #: keeps stops finite).
    shutdownTimeout = 30.0
    #: Set for nginx's fast "stop" (SIGTERM): close connections at once.
    fastShutdown = False

    def stopService(self) -> Any:
        """
        Stop listening, let in-flight requests finish (closing each
        keepalive connection once idle) unless stopping fast, then close
        idle upstream connections.  Active health checks stop at once.
        """
        for check in _healthChecks(self.config):
            check.stop()
        d = super().stopService()
        if d is None:
            d = Deferred()
            d.callback(None)
        d.addCallback(lambda _: self._drain())

        def cleanup(result: Any) -> Any:
            """
            Close idle upstream connections and the error log.
            """
            state = self.config.stateOf("upstream")
            if state is not None:
                state["pool"].closeAll()
            if self._errorLog is not None:
                self._errorLog.stop()
            return result

        return d.addBoth(cleanup)

    def _drain(self) -> Any:
        """
        Close idle client connections now and busy ones as they go idle.
        """
        timeout = self.config.mainConf.get("worker_shutdown_timeout")
        if timeout is None:
            timeout = self.shutdownTimeout
        deadline = self._reactor.seconds() + (0 if self.fastShutdown else timeout)
        done: "Deferred[None]" = Deferred()

        def sweep() -> None:
            """
            One pass: close idle connections, count the rest.
            """
            remaining = 0
            expired = self._reactor.seconds() >= deadline
            for factory in self.factories.values():
                for channel in factory.openChannels():
                    transport: Any = channel.transport
                    # Counted until really closed, so buffered bytes (a
                    # last chunk) are flushed before the reactor stops.
                    remaining += 1
                    if expired:
                        transport.abortConnection()
                        continue
                    goAway = getattr(channel, "goAway", None)
                    if goAway is not None:
                        # HTTP/2: GOAWAY first; its open streams finish.
                        goAway()
                    if channel.isIdle():
                        transport.loseConnection()
                    else:
                        # A WebSocket relay closes its client with 1001
                        # (going away); a byte tunnel runs on until it
                        # ends or the deadline aborts it: it cannot know
                        # where a frame ends, so it adds no bytes.
                        pair = getattr(channel, "upgradedPair", None)
                        goingAway = getattr(pair, "goingAway", None)
                        if goingAway is not None:
                            goingAway()
            if remaining == 0 or expired:
                if loop.running:
                    loop.stop()
                if not done.called:
                    done.callback(None)

        loop = LoopingCall(sweep)
        loop.clock = self._reactor
        loop.start(0.05, now=True)
        return done

    def reload(self, config: CompiledConfig) -> None:
        """
        Use C{config} for new connections: listeners it keeps get the new
        servers, new ones start, and ones it drops stop.

        New sockets are bound before anything changes, so a reload whose
        new C{listen} cannot be bound raises and leaves the running config
        whole, like nginx keeping its old workers.  Connections already
        open keep the config they started with.

        @raise Exception: when a new listener cannot be bound.
        """
        wanted = {listener.address.key: listener for listener in config.listeners}
        added = []
        try:
            for key, listener in wanted.items():
                if key not in self.factories:
                    self._addListener(listener)
                    added.append(key)
        except BaseException:
            for key in added:
                self._dropListener(key)
            raise
        old = self.config
        self.config = config
        for key in list(self._listening):
            if key not in wanted:
                self._dropListener(key)
        for key, listener in wanted.items():
            self.factories[key].listener = listener
        if self._errorLog is not None:
            self._errorLog.stop()
            self._errorLog = None
        if self.running:
            self._errorLog = ErrorLogObserver.fromConfig(config, self.defaultErrorLog)
            if self._errorLog is not None:
                self._errorLog.start()
        # The old config's probes stop; the new one's start from healthy.
        # Re-resolvers first take over the old answers (adopt).
        previous = _healthChecks(old)
        for check in previous:
            check.stop()
        if self.running:
            for check in _healthChecks(config):
                adopt = getattr(check, "adopt", None)
                if adopt is not None:
                    adopt(previous)
                check.start()
        # Requests in flight return their connections to the old pool, whose
        # idle timers close them later; those idle now are closed here.
        state = old.stateOf("upstream")
        if state is not None:
            state["pool"].closeAll()
        self.log.info("configuration reloaded from {filename}", filename=config.filename)

    def _dropListener(self, key: Any) -> None:
        """
        Stop listening on one address; open connections carry on.
        """
        service = self._listening.pop(key)
        del self.factories[key]
        service.disownServiceParent()

    def reopenLogs(self) -> None:
        """
        Reopen every log file (after rotation).
        """
        state = self.config.stateOf("log")
        if state is not None:
            for logFile in state["files"].values():
                logFile.reopen()
        if self._errorLog is not None:
            self._errorLog.reopen()


def _healthChecks(config: CompiledConfig) -> List[Any]:
    """
    @return: the active health checks a config built
        (L{twisted_rproxy.upstream.health.HealthCheck}s) and its upstream
        re-resolvers (L{twisted_rproxy.upstream.resolver.UpstreamResolver}),
        which run only
        while a L{ProxyService} serves it.
    """
    state = config.stateOf("upstream")
    if state is None:
        return []
    # Re-resolution of "server NAME resolve" runs (and stops) with them.
    return list(state.get("healthChecks", ())) + list(state.get("resolvers", ()))


def makeProxyService(
    path: Optional[str] = None,
    text: Optional[str] = None,
    config: Optional[CompiledConfig] = None,
    reactor: Any = None,
    **kwargs: Any,
) -> ProxyService:
    """
    Build a L{ProxyService} from a config file, config text, or an already
    compiled config, ready to add to an Application.
    """
    if config is None:
        config = loadConfig(path=path, text=text, reactor=reactor, **kwargs)
    return ProxyService(config, reactor)


