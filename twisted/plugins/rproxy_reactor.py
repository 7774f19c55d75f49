"""
C{twistd -r rproxy-epoll}: the reactor the C{rproxy} command runs on, for
C{twistd rproxy} and any other application (a string module path keeps
C{twistd --help-reactors} from importing the proxy).
"""

from twisted.application.reactors import Reactor

rproxyEpoll = Reactor(
    "rproxy-epoll",
    "twisted_rproxy.reactor",
    "epoll, with twisted_rproxy's connections dispatched without a log context",
)
