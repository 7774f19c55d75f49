# -*- test-case-name: tests.integration.test_workers -*-
"""
C{worker_processes N}: a master process that binds the listening sockets
and runs N worker processes serving on them, as nginx's master does.

One Python process uses one core; several workers sharing the master's
sockets (the kernel hands each new connection to one of them) use them
all.  The master serves nothing itself.  It restarts a worker that dies,
and on a reload it checks the new config, binds any new address, starts a
new generation of workers on it and asks the old ones to finish their
requests and exit, so a reload never refuses a connection.

State that lives in a process (passive upstream health, the keepalive
pool) is per worker, as nginx's is without a C{zone}.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.fdesc import readFromFD, setNonBlocking
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .config.ast import Directive, treeFromData, treeToData
from .listener import INHERITED_ENV, bindSocket

#: Set in a worker's environment to the master's pid: the worker serves on
#: inherited sockets, and stops when the master goes.
WORKER_ENV = "RPROXY_WORKER_OF"

#: A worker that dies sooner than this after it started is restarted only
#: after the same delay, so a worker that cannot start does not spin.
RESPAWN_DELAY = 1.0

#: Each further young death in a row doubles the delay, up to this: a
#: worker that can never start (a backend file gone, a port taken by
#: another program) costs a log line a minute, not one a second.
MAX_RESPAWN_DELAY = 60.0


def workerCount(setting: Any) -> int:
    """
    @param setting: the C{worker_processes} value, a number or C{"auto"}.
    @return: how many workers to run (C{auto}: one per usable CPU).
    """
    if setting == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover (not Linux)
            return os.cpu_count() or 1
    return max(1, int(setting))


class _Worker(ProcessProtocol):
    """
    One worker process, as the master sees it.

    @ivar generation: the config generation it serves.
    @ivar startedAt: when it was started, on the master's clock.
    """

    def __init__(self, master: "Master", generation: int, startedAt: float,
                 configData: bytes) -> None:
        self.master = master
        self.generation = generation
        self.startedAt = startedAt
        self.pid: Optional[int] = None
        self._configData = configData

    def connectionMade(self) -> None:
        """
        Note the pid, and hand the worker its config on standard input.

        Standard input then stays open, unused, as the worker's lifeline:
        only the kernel closes it, when this process dies, however it dies.
        """
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self.transport.write(self._configData)  # type: ignore[union-attr]

    def processEnded(self, reason: Failure) -> None:
        """
        Tell the master.
        """
        self.master.workerEnded(self, reason)

    def signal(self, number: int) -> None:
        """
        Send the worker a signal, if it is still running.
        """
        if self.pid is not None:
            try:
                os.kill(self.pid, number)
            except OSError:
                pass


class Master:
    """
    Binds the listening sockets of a config and keeps C{count} workers
    serving on them.

    @ivar workers: the running workers, of every generation.
    @ivar sockets: the listening sockets of the current generation, by
        address as C{ListenAddress.display()} spells it.
    @ivar stopped: fires once every worker has exited after L{stop}.
    """

    log = Logger(namespace="rproxy.master")

    def __init__(
        self, reactor: Any, workerArgv: Sequence[str], count: int,
        environ: Optional[Dict[str, str]] = None,
    ) -> None:
        """
        @param workerArgv: the command that runs one worker (with the
            same config, prefix and C{-g} as the master).
        @param count: how many workers to run.
        @param environ: the workers' environment (default: the master's).
        """
        self._reactor = reactor
        self._argv = list(workerArgv)
        self.count = count
        self._environ = dict(os.environ if environ is None else environ)
        self.workers: List[_Worker] = []
        self.sockets: Dict[str, socket.socket] = {}
        self.generation = 0
        self._configData = b""
        self.stopping = False
        self.stopped: "Deferred[None]" = Deferred()
        self._youngDeaths = 0

    def bind(self, config: Any) -> None:
        """
        Bind every listening address of C{config}, keeping the sockets of
        addresses already bound, so a reload rebinds nothing.

        @raise twisted_rproxy.listener.ListenError: an address cannot be
            bound; nothing changes then.
        """
        wanted: Dict[str, socket.socket] = {}
        made: List[socket.socket] = []
        try:
            for listener in config.listeners:
                name = listener.address.display()
                sock = self.sockets.get(name)
                if sock is None:
                    sock = bindSocket(listener.address)
                    made.append(sock)
                wanted[name] = sock
        except BaseException:
            for sock in made:
                sock.close()
            raise
        for name, sock in self.sockets.items():
            if name not in wanted:
                sock.close()  # the old workers keep their own copies
        self.sockets = wanted

    def start(self, config: Any) -> None:
        """
        Start the first generation of workers on the bound sockets.

        @param config: the compiled config the sockets were bound for.
        """
        self._startGeneration(config)

    def reload(self, config: Any, count: int) -> None:
        """
        Serve C{config}, already checked: bind its new addresses, start a
        new generation of workers, then let the old ones finish.

        @raise twisted_rproxy.listener.ListenError: a new address cannot
            be bound; the running workers carry on untouched.
        """
        self.bind(config)
        old = list(self.workers)
        self.count = count
        self._youngDeaths = 0  # a new config may well start where the old did not
        self._startGeneration(config)
        for worker in old:
            worker.signal(signal.SIGQUIT)
        self.log.info("reloaded: {count} new worker(s), {old} finishing", count=count, old=len(old))

    def reopen(self) -> None:
        """
        Ask every worker to reopen its log files.
        """
        for worker in self.workers:
            worker.signal(signal.SIGUSR1)

    def stop(self, graceful: bool) -> "Deferred[None]":
        """
        Stop every worker: C{graceful} lets in-flight requests finish
        (SIGQUIT), otherwise they close at once (SIGTERM).

        @return: L{stopped}.
        """
        self.stopping = True
        for worker in self.workers:
            worker.signal(signal.SIGQUIT if graceful else signal.SIGTERM)
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}
        self._checkStopped()
        return self.stopped

    def workerEnded(self, worker: _Worker, reason: Failure) -> None:
        """
        A worker exited: restart it unless it was asked to go.
        """
        if worker in self.workers:
            self.workers.remove(worker)
        if self.stopping:
            self._checkStopped()
            return
        if worker.generation != self.generation:
            return  # an old generation finishing after a reload
        status = getattr(reason.value, "exitCode", None)
        signalled = getattr(reason.value, "signal", None)
        how = f"on signal {signalled}" if signalled else f"with code {status}"
        self.log.error("worker process {pid} exited {how}; starting another",
                       pid=worker.pid, how=how)
        lived = self._reactor.seconds() - worker.startedAt
        if lived < RESPAWN_DELAY:
            delay = self.respawnDelay()
            self.log.error("worker died {lived:.1f}s after it started; the next "
                           "starts in {delay:.0f}s", lived=lived, delay=delay)
            self._reactor.callLater(delay, self._respawn, worker.generation)
        else:
            self._youngDeaths = 0
            self._respawn(worker.generation)

    def respawnDelay(self) -> float:
        """
        Count one more worker that died young.

        @return: how long to wait before replacing it: L{RESPAWN_DELAY},
            doubled for each young death in a row, at most
            L{MAX_RESPAWN_DELAY}.
        """
        self._youngDeaths += 1
        return min(RESPAWN_DELAY * 2 ** (self._youngDeaths - 1), MAX_RESPAWN_DELAY)

    def _respawn(self, generation: int) -> None:
        if not self.stopping and generation == self.generation:
            self._spawn()

    def _checkStopped(self) -> None:
        if self.stopping and not self.workers and not self.stopped.called:
            self.stopped.callback(None)

    def _startGeneration(self, config: Any) -> None:
        """
        Start C{count} workers on C{config}: its parsed tree, exactly as the
        master checked it, so an edit made since cannot reach them (and a
        worker restarted later runs the same config as its siblings).
        """
        self.generation += 1
        self._configData = configData(config)
        for _ in range(self.count):
            self._spawn()

    def _spawn(self) -> None:
        """
        Start one worker of the current generation, its listening sockets
        on descriptors 3 and up.
        """
        childFDs: Dict[int, Any] = {0: "w", 1: 1, 2: 2}
        inherited = {}
        for number, (name, sock) in enumerate(sorted(self.sockets.items()), start=3):
            childFDs[number] = sock.fileno()
            inherited[name] = [number, int(sock.family)]
        environ = dict(self._environ)
        environ[INHERITED_ENV] = json.dumps(inherited)
        environ[WORKER_ENV] = str(os.getpid())
        worker = _Worker(self, self.generation, self._reactor.seconds(), self._configData)
        self._reactor.spawnProcess(
            worker, self._argv[0], self._argv, env=environ, childFDs=childFDs)
        self.workers.append(worker)


def configData(config: Any) -> bytes:
    """
    @return: what a worker reads on its standard input: the config's file
        name and parsed directives, as JSON, after a line giving its length
        (standard input stays open, so the worker cannot read to the end).
    """
    body = json.dumps({"filename": config.filename, "tree": treeToData(config.tree)}).encode("utf-8")
    return b"%d\n%s" % (len(body), body)


def readConfigData(stream: Any) -> Tuple[str, Tuple[Directive, ...]]:
    """
    In a worker: read what L{configData} wrote.

    @return: the config's file name and directive tree.
    @raise EOFError: when the master went away before writing it all.
    """
    header = stream.readline()
    body = stream.read(int(header)) if header[:-1].isdigit() and header.endswith(b"\n") else None
    if body is None or len(body) != int(header):
        raise EOFError("the master went away before handing over the configuration")
    data = json.loads(body.decode("utf-8"))
    return data["filename"], treeFromData(data["tree"])


def workerCommand(options: Any, prefix: str, python: str = sys.executable) -> List[str]:
    """
    @param options: the master's parsed C{rproxy} options.
    @return: the command line of a worker: the master's config, prefix,
        error log and C{-g} directives.
    """
    argv = [python, "-m", "twisted_rproxy", "-p", prefix]
    if options.config is not None:
        argv += ["-c", options.config]
    if options.errorlog:
        argv += ["-e", options.errorlog]
    if options.directives:
        argv += ["-g", options.directives]
    return argv


class _MasterLifeline(FileDescriptor):
    """
    A worker's standard input, which its master holds open and never writes
    to once the config is read: its end of file means the master is gone.
    """

    def __init__(self, reactor: Any, fileno: int, stop: Callable[[], None]) -> None:
        super().__init__(reactor)
        self._fileno = fileno
        self._stop = stop
        setNonBlocking(fileno)

    def fileno(self) -> int:
        """The descriptor watched."""
        return self._fileno

    def doRead(self) -> Any:
        """
        Discard anything written; report the end of file.
        """
        return readFromFD(self._fileno, lambda data: None)

    def connectionLost(self, reason: Failure) -> None:
        """
        The master has gone: stop this worker.
        """
        super().connectionLost(reason)
        self._stop()


def watchMaster(reactor: Any, stop: Callable[[], None], fileno: int = 0) -> _MasterLifeline:
    """
    In a worker: call C{stop} as soon as the master has gone, killed or
    not, so no worker outlives its master.  The worker learns it from the
    master's end of its standard input closing, not by polling.

    @return: the watcher, reading.
    """
    lifeline = _MasterLifeline(reactor, fileno, stop)
    lifeline.startReading()
    return lifeline
