"""
Tests for L{twisted_rproxy.http.timers}: the shared heap of client
connection deadlines.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any, List, Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_rproxy.http.timers import ConnectionTimers, timersFor


class Conn:
    """
    A connection as the timers see it, recording when it timed out.
    """

    def __init__(self, clock: Clock, fired: List["Conn"], name: str) -> None:
        self._deadline: Optional[float] = None
        self._timerEntry: Optional[List[Any]] = None
        self.clock = clock
        self.fired = fired
        self.name = name
        self.firedAt: List[float] = []
        self.onTimeout = lambda: None

    def _timedOut(self) -> None:
        self.firedAt.append(self.clock.seconds())
        self.fired.append(self)
        self.onTimeout()


class ConnectionTimersTests(SynchronousTestCase):
    """
    Deadlines fire when due on the reactor's clock, however often they
    are moved, with one reactor call for all of them.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.timers = ConnectionTimers(self.clock)
        self.fired: List[Conn] = []

    def conn(self, name: str = "c") -> Conn:
        return Conn(self.clock, self.fired, name)

    def test_firesWhenDue(self) -> None:
        """A deadline fires exactly when its seconds have passed, once."""
        c = self.conn()
        self.timers.arm(c, 10)
        self.clock.advance(9.999)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.001)
        self.assertEqual(c.firedAt, [10])
        self.clock.advance(100)
        self.assertEqual(c.firedAt, [10])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pushedLater(self) -> None:
        """Re-arming moves the deadline later: the old one does not fire."""
        c = self.conn()
        self.timers.arm(c, 10)
        self.clock.advance(5)
        self.timers.arm(c, 10)
        self.clock.advance(9)
        self.assertEqual(self.fired, [])
        self.clock.advance(1)
        self.assertEqual(c.firedAt, [15])

    def test_pulledEarlier(self) -> None:
        """Re-arming with a nearer deadline fires at the nearer one."""
        c = self.conn()
        self.timers.arm(c, 60)
        self.timers.arm(c, 5)
        self.clock.advance(5)
        self.assertEqual(c.firedAt, [5])
        self.clock.advance(100)
        self.assertEqual(c.firedAt, [5])

    def test_oneReactorCall(self) -> None:
        """Many connections share one pending reactor call."""
        conns = [self.conn(str(i)) for i in range(50)]
        for i, c in enumerate(conns):
            self.timers.arm(c, 10 + i)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(10)
        self.assertEqual(self.fired, conns[:1])
        self.clock.advance(49)
        self.assertEqual(self.fired, conns)

    def test_earlierConnectionReschedules(self) -> None:
        """A new deadline before the pending call's brings the call forward."""
        late, early = self.conn("late"), self.conn("early")
        self.timers.arm(late, 60)
        self.timers.arm(early, 1)
        self.clock.advance(1)
        self.assertEqual(self.fired, [early])
        self.clock.advance(59)
        self.assertEqual(self.fired, [early, late])

    def test_disarm(self) -> None:
        """
        A disarmed connection does not fire; when no armed connection is
        left the reactor holds no call.
        """
        a, b = self.conn("a"), self.conn("b")
        self.timers.arm(a, 10)
        self.timers.arm(b, 20)
        self.timers.disarm(a)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(10)
        self.assertEqual(self.fired, [])
        self.timers.disarm(b)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual(self.fired, [])

    def test_disarmTwice(self) -> None:
        """Disarming an unarmed connection changes nothing."""
        a, b = self.conn("a"), self.conn("b")
        self.timers.arm(b, 5)
        self.timers.disarm(a)
        self.timers.disarm(a)
        self.clock.advance(5)
        self.assertEqual(self.fired, [b])

    def test_rearmAfterDisarm(self) -> None:
        """A connection disarmed and armed again fires at its new deadline."""
        c = self.conn()
        self.timers.arm(c, 10)
        self.timers.disarm(c)
        self.timers.arm(c, 30)
        self.clock.advance(10)
        self.assertEqual(self.fired, [])
        self.clock.advance(20)
        self.assertEqual(c.firedAt, [30])

    def test_rearmFromCallback(self) -> None:
        """A connection arming itself again when it times out fires again."""
        c = self.conn()
        c.onTimeout = lambda: self.timers.arm(c, 5) if len(c.firedAt) < 3 else None
        self.timers.arm(c, 5)
        self.clock.advance(5)
        self.clock.advance(5)
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(c.firedAt, [5, 10, 15])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_sameDeadline(self) -> None:
        """Connections due at the same moment all fire, in arming order."""
        conns = [self.conn(str(i)) for i in range(3)]
        for c in conns:
            self.timers.arm(c, 7)
        self.clock.advance(7)
        self.assertEqual(self.fired, conns)

    def test_timersForReactor(self) -> None:
        """Each reactor has one L{ConnectionTimers}."""
        other = Clock()
        self.assertIs(timersFor(self.clock), timersFor(self.clock))
        self.assertIsNot(timersFor(self.clock), timersFor(other))


class RetentionTests(SynchronousTestCase):
    """
    The heap never keeps a disarmed connection alive, and stays about the
    size of the armed ones however many come and go.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.timers = ConnectionTimers(self.clock)
        self.fired: List[Conn] = []
        self.keeper = Conn(self.clock, self.fired, "keeper")
        self.timers.arm(self.keeper, 1000)

    def test_disarmedIsReleased(self) -> None:
        """A disarmed connection can be collected while others are armed."""
        c = Conn(self.clock, self.fired, "gone")
        self.timers.arm(c, 10)
        ref = weakref.ref(c)
        self.timers.disarm(c)
        del c
        gc.collect()
        self.assertIsNone(ref())

    def test_supersededIsReleased(self) -> None:
        """
        An entry replaced by an earlier deadline no longer refers to its
        connection once that connection is disarmed.
        """
        c = Conn(self.clock, self.fired, "moved")
        self.timers.arm(c, 100)
        self.timers.arm(c, 10)
        ref = weakref.ref(c)
        self.timers.disarm(c)
        del c
        gc.collect()
        self.assertIsNone(ref())

    def test_compacted(self) -> None:
        """Connections armed and disarmed in turn leave a small heap."""
        for i in range(1000):
            c = Conn(self.clock, self.fired, str(i))
            self.timers.arm(c, 10 + i)
            self.timers.disarm(c)
        self.assertLess(len(self.timers._heap), 60)
        self.clock.advance(1000)
        self.assertEqual(self.fired, [self.keeper])
