"""
A Twisted application that runs twisted_rproxy next to whatever else it
serves, and reloads the proxy config on SIGHUP.

Run it from the directory that holds rproxy.conf:

    twistd -n -y proxy_app.tac
"""

import signal

from twisted.application.service import Application
from twisted.internet import reactor
from twisted.logger import Logger

from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.service import loadConfig, makeProxyService

CONFIG = "rproxy.conf"
log = Logger(namespace="proxy_app")

application = Application("proxy_app")
proxy = makeProxyService(path=CONFIG)
proxy.setServiceParent(application)


def reload():
    """
    Compile the config again and swap it in; keep the running one if the
    new one is broken.
    """
    try:
        config = loadConfig(path=CONFIG)
    except ConfigError as e:
        log.error("reload failed: {error}", error=e)
        return
    proxy.reload(config)
    log.info("reloaded {path}", path=CONFIG)


signal.signal(signal.SIGHUP, lambda *args: reactor.callFromThread(reload))
