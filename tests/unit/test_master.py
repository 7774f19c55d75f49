# -*- test-case-name: tests.unit.test_master -*-
"""
Tests for L{twisted_rproxy.master}: how the master keeps its workers
running, on a reactor that records the processes it is asked to spawn and
a clock that only moves when a test advances it.  The real processes are
tested in tests/integration/test_workers.py.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import tempfile
from typing import Any, Dict, List

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_rproxy.config.ast import treeFromData, treeToData
from twisted_rproxy.config.parser import parseString
from twisted_rproxy.master import (
    INHERITED_ENV,
    MAX_RESPAWN_DELAY,
    RESPAWN_DELAY,
    WORKER_ENV,
    Master,
    watchMaster,
    configData,
    readConfigData,
    workerCount,
)
from twisted_rproxy.service import loadConfig

CONFIG = "events {}\nhttp {\n access_log off;\n server { listen unix:%s; return 200 ok; }\n}\n"
"""A config with one listener, on a UNIX socket whose path goes in C{%s}."""


def tempConfig(case: SynchronousTestCase) -> Any:
    """
    @return: L{CONFIG} compiled, its socket in a fresh directory.  The
        directory is a short one under the system's temporary directory,
        not C{case.mktemp()} under the checkout: a UNIX socket's path must
        fit in 107 bytes, and the test's own name and a long checkout path
        passed that (C{bind} failed in a clone under C{/tmp/tmp.XXXXXXXXXX}).
    """
    directory = tempfile.mkdtemp(prefix="rproxy-master-")
    case.addCleanup(shutil.rmtree, directory, True)
    return loadConfig(text=CONFIG % os.path.join(directory, "s.sock"))


class RecordingTransport:
    """
    The process transport a spawned worker gets: records what the master
    writes to its standard input.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stdin = b""
        self.stdinClosed = False

    def write(self, data: bytes) -> None:
        """Record standard input."""
        self.stdin += data

    def closeStdin(self) -> None:
        """Record the close."""
        self.stdinClosed = True


class SpawningClock(Clock):
    """
    A clock that records C{spawnProcess} calls and starts each protocol on
    a L{RecordingTransport}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[Dict[str, Any]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: List[str],
                     env: Dict[str, str], childFDs: Dict[int, Any]) -> RecordingTransport:
        """Record the call and connect the protocol."""
        transport = RecordingTransport(1000 + len(self.spawned))
        protocol.makeConnection(transport)
        self.spawned.append({"protocol": protocol, "args": args, "env": env,
                             "childFDs": childFDs, "transport": transport})
        return transport


class MasterTests(SynchronousTestCase):
    """
    L{Master} starts, restarts, reloads and stops workers.
    """

    def setUp(self) -> None:
        self.reactor = SpawningClock()
        self.config = tempConfig(self)
        self.master = Master(self.reactor, ["python", "-m", "twisted_rproxy"], 2, environ={})
        self.master.bind(self.config)
        self.addCleanup(lambda: [s.close() for s in self.master.sockets.values()])
        self.signals: List[Any] = []
        import twisted_rproxy.master as masterModule

        self.patch(masterModule.os, "kill", lambda pid, number: self.signals.append((pid, number)))

    def end(self, index: int, reason: Any = None) -> None:
        """Make spawned worker C{index} exit."""
        protocol = self.reactor.spawned[index]["protocol"]
        protocol.processEnded(Failure(reason or ProcessTerminated(signal=9)))

    def test_startHandsOverSocketsAndConfig(self) -> None:
        """
        Each worker gets the listening socket as descriptor 3, named in its
        environment, the master's pid, and the checked config on stdin.
        """
        self.master.start(self.config)
        self.assertEqual(len(self.reactor.spawned), 2)
        spawned = self.reactor.spawned[0]
        [(name, sock)] = self.master.sockets.items()
        self.assertEqual(spawned["childFDs"][3], sock.fileno())
        self.assertIn(f'"{name}": [3, ', spawned["env"][INHERITED_ENV])
        self.assertIn(WORKER_ENV, spawned["env"])
        # Standard input stays open: it is the worker's lifeline.
        self.assertFalse(spawned["transport"].stdinClosed)
        filename, tree = readConfigData(io.BytesIO(spawned["transport"].stdin))
        self.assertEqual((filename, tree), ("<string>", self.config.tree))

    def test_deadWorkerIsRestarted(self) -> None:
        """
        A worker of the running generation that dies is replaced, after
        L{RESPAWN_DELAY} if it died straight after starting.
        """
        self.master.start(self.config)
        self.end(0)
        self.assertEqual(len(self.reactor.spawned), 2, "not at once: it died young")
        self.reactor.advance(RESPAWN_DELAY)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.reactor.advance(60)
        self.end(1, ProcessDone(0))
        self.assertEqual(len(self.reactor.spawned), 4, "at once: it had run a while")
        self.assertEqual(len(self.master.workers), 2)

    def test_workerThatKeepsDyingYoungBacksOff(self) -> None:
        """
        Each young death in a row doubles the wait before the next worker,
        up to L{MAX_RESPAWN_DELAY}; one that ran a while resets it.
        """
        self.master.start(self.config)
        delays = []
        for _ in range(8):
            spawned = len(self.reactor.spawned)
            self.end(len(self.reactor.spawned) - 1)
            waited = 0.0
            while len(self.reactor.spawned) == spawned:
                self.reactor.advance(0.5)
                waited += 0.5
            delays.append(waited)
        self.assertEqual(delays, [1, 2, 4, 8, 16, 32, MAX_RESPAWN_DELAY, MAX_RESPAWN_DELAY])
        self.reactor.advance(600)
        self.end(len(self.reactor.spawned) - 1, ProcessDone(0))
        self.assertEqual(len(self.reactor.spawned), 11, "at once: it had run a while")
        self.end(len(self.reactor.spawned) - 1)
        self.reactor.advance(RESPAWN_DELAY)
        self.assertEqual(len(self.reactor.spawned), 12, "back to the first delay")

    def test_reloadReplacesTheGeneration(self) -> None:
        """
        A reload starts a new generation and asks the old one to finish
        (SIGQUIT); the old workers exiting then starts nothing.
        """
        self.master.start(self.config)
        oldPids = [s["transport"].pid for s in self.reactor.spawned]
        self.master.reload(self.config, 3)
        self.assertEqual(len(self.reactor.spawned), 5)
        self.assertEqual(self.signals, [(pid, signal.SIGQUIT) for pid in oldPids])
        self.end(0, ProcessDone(0))
        self.end(1, ProcessDone(0))
        self.reactor.advance(RESPAWN_DELAY)
        self.assertEqual(len(self.reactor.spawned), 5)
        self.assertEqual(len(self.master.workers), 3)

    def test_stop(self) -> None:
        """
        Stopping signals every worker (SIGTERM, or SIGQUIT when graceful),
        starts no replacement, and fires once the last one has exited.
        """
        self.master.start(self.config)
        stopped = self.master.stop(graceful=False)
        self.assertEqual([n for _, n in self.signals], [signal.SIGTERM] * 2)
        self.assertNoResult(stopped)
        self.end(0)
        self.assertNoResult(stopped)
        self.end(1)
        self.successResultOf(stopped)
        self.reactor.advance(RESPAWN_DELAY)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_reloadKeepsBoundSockets(self) -> None:
        """
        Binding again for a config with the same listen address keeps the
        socket already bound.
        """
        before = dict(self.master.sockets)
        self.master.bind(self.config)
        self.assertEqual(self.master.sockets, before)


class HelperTests(SynchronousTestCase):
    """
    The small functions around the master.
    """

    def test_workerCount(self) -> None:
        """
        A number is taken as it is; C{auto} is at least one.
        """
        self.assertEqual(workerCount(3), 3)
        self.assertGreaterEqual(workerCount("auto"), 1)

    def test_treeRoundTrip(self) -> None:
        """
        A parsed tree survives L{treeToData} and L{treeFromData}, file
        names and lines included.
        """
        tree = parseString("a 1;\nb { c 'x y'; d {} }\n", "f.conf")
        self.assertEqual(treeFromData(treeToData(tree)), tree)

    def test_configData(self) -> None:
        """
        L{configData} and L{readConfigData} carry a config's file name and
        tree.
        """
        config = tempConfig(self)
        self.assertEqual(readConfigData(io.BytesIO(configData(config))),
                         (config.filename, config.tree))

    def test_configDataCutShort(self) -> None:
        """
        A master that died while writing the config leaves the worker an
        L{EOFError} saying so, at whatever point the data stops.
        """
        data = configData(tempConfig(self))
        for end in (0, 1, data.index(b"\n"), data.index(b"\n") + 1, len(data) - 1):
            with self.assertRaises(EOFError) as caught:
                readConfigData(io.BytesIO(data[:end]))
            self.assertIn("master went away", str(caught.exception))
        with self.assertRaises(EOFError):
            readConfigData(io.BytesIO(b"junk\n{}"))


class WatchMasterTests(SynchronousTestCase):
    """
    L{watchMaster} on a real (not running) epoll reactor and a real pipe,
    turned one iteration at a time.
    """

    def setUp(self) -> None:
        self.reactor = EPollReactor()
        self.readEnd, self.writeEnd = os.pipe()
        self.addCleanup(self._close, self.writeEnd)
        self.addCleanup(self._close, self.readEnd)
        # (Cleanups run last first: out of the reactor before the close.)
        self.addCleanup(self.reactor.removeAll)
        self.stops: List[bool] = []
        self.lifeline = watchMaster(self.reactor, lambda: self.stops.append(True), self.readEnd)

    def _close(self, fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass

    def test_masterAlive(self) -> None:
        """
        While the master holds its end open, the worker keeps running, even
        if something is written there.
        """
        os.write(self.writeEnd, b"stray")
        self.reactor.doIteration(0)
        self.reactor.doIteration(0)
        self.assertEqual(self.stops, [])

    def test_masterGone(self) -> None:
        """
        The master's end closing (its process dying) stops the worker at
        once, and only once.
        """
        os.close(self.writeEnd)
        self.reactor.doIteration(1)
        self.assertEqual(self.stops, [True])
        self.reactor.doIteration(0)
        self.assertEqual(self.stops, [True])
        self.assertNotIn(self.lifeline, self.reactor.getReaders())
