"""
Tests for L{twisted_rproxy.upstream.peerstate}: peer counters live in an
L{IPeerStateStore}, the process's own by default, and a module can plug
in another that several configs (as several workers would) share.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.unit.configsupport import ConfigTestCase
from twisted_rproxy.interfaces import IPeerState, IPeerStateStore
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.modules.upstream import PEER_STATE_STORE
from twisted_rproxy.plugins import builtinModules
from twisted_rproxy.upstream.peerstate import MemoryPeerState, MemoryPeerStateStore

GROUP = """
upstream u {
    zone backends 64k;
    server 127.0.0.1:1 max_fails=2 fail_timeout=10s;
    server 127.0.0.1:2 max_fails=2 fail_timeout=10s;
}
upstream v { server 127.0.0.1:1; server 127.0.0.1:3; }
"""


@implementer(IPeerStateStore)
class RecordingStore:
    """
    A store kept outside any one config (as a shared one would be), which
    records what it was asked for.
    """

    def __init__(self) -> None:
        self.inner = MemoryPeerStateStore()
        self.asked: List[Tuple[Optional[str], str, str]] = []

    def stateFor(self, zone: Optional[str], upstream: str, address: str) -> IPeerState:
        """
        Record the question and answer from memory.
        """
        self.asked.append((zone, upstream, address))
        return self.inner.stateFor(zone, upstream, address)


class StoreModule(ProxyModule):
    """
    A team's module that supplies the peer state store.
    """

    name = "test_peer_store"
    order = 10

    def __init__(self, store: Any) -> None:
        self.store = store

    def configure(self, compiler: Any) -> None:
        """
        Put the store where the upstream module looks for it.
        """
        compiler.state[PEER_STATE_STORE] = self.store


class PeerStateStoreTests(ConfigTestCase):
    """
    Peers read and write their counters through the config's store.
    """

    def test_providers(self) -> None:
        """
        The in-process store and state provide their interfaces, and a
        store gives one state per (zone, group, address).
        """
        store = MemoryPeerStateStore()
        verifyObject(IPeerStateStore, store)
        state = store.stateFor("z", "u", "127.0.0.1:1")
        verifyObject(IPeerState, state)
        self.assertIs(store.stateFor("z", "u", "127.0.0.1:1"), state)
        self.assertIsNot(store.stateFor("z", "v", "127.0.0.1:1"), state)
        self.assertIsNot(store.stateFor(None, "u", "127.0.0.1:1"), state)

    def test_defaultStoreIsInProcess(self) -> None:
        """
        Without a module's store, each config gets its own in-process one
        and the peers' counters are kept there.
        """
        config = self.compileHTTP(GROUP)
        state = config.stateOf("upstream")
        store = state[PEER_STATE_STORE]
        self.assertIsInstance(store, MemoryPeerStateStore)
        peer = state["upstreams"]["u"].peers[0]
        peer.fails = 1
        peer.conns += 1
        shared = store.stateFor("backends", "u", "127.0.0.1:1")
        self.assertIsInstance(shared, MemoryPeerState)
        self.assertEqual((shared.fails, shared.conns), (1, 1))
        self.assertEqual(state["upstreams"]["v"].peers[0].fails, 0)

    def test_pluggedStoreIsShared(self) -> None:
        """
        A module's store is asked for every peer (with the group's zone),
        and failures one config's balancer records mark the peer down for
        another config using the same store, as two workers sharing a
        zone would see it.
        """
        store = RecordingStore()
        modules = builtinModules() + [StoreModule(store)]
        first = self.compileHTTP(GROUP, modules=modules)
        self.assertEqual(store.asked, [
            ("backends", "u", "127.0.0.1:1"), ("backends", "u", "127.0.0.1:2"),
            (None, "v", "127.0.0.1:1"), (None, "v", "127.0.0.1:3"),
        ])
        second = self.compileHTTP(GROUP, modules=builtinModules() + [StoreModule(store)])
        one = first.stateOf("upstream")["upstreams"]["u"]
        other = second.stateOf("upstream")["upstreams"]["u"]
        failing = one.peers[0]
        one.balancer.release(failing, True)
        one.balancer.release(failing, True)
        picks = {other.balancer.pick(None).name for _ in range(4)}
        self.assertEqual(picks, {"127.0.0.1:2"})

    def test_storeMustProvideTheInterface(self) -> None:
        """
        Anything else in the store's place is a plain error at load.
        """
        modules = builtinModules() + [StoreModule(object())]
        self.assertRaises(TypeError, self.compileHTTP, GROUP, modules=modules)
