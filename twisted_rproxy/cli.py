# -*- test-case-name: tests.integration.test_cli -*-
"""
C{rproxy}: the proxy driven with nginx's own command-line habits (C{-c -p -e
-g -t -T -v -V -s}), pid file and signals, so scripts and units written for
nginx drive it unchanged.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, List, Optional

from ._version import __version__
from .config.errors import ConfigError
from .plugins import PluginError

SIGNALS = {
    "stop": signal.SIGTERM,
    "quit": signal.SIGQUIT,
    "reload": signal.SIGHUP,
    "reopen": signal.SIGUSR1,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rproxy", add_help=False,
        description="twisted_rproxy, driven like nginx.",
    )
    parser.add_argument("-?", "-h", action="store_true", dest="help", help="this help")
    parser.add_argument("-v", action="store_true", dest="version", help="show version and exit")
    parser.add_argument("-V", action="store_true", dest="verbose", help="show version and configure options then exit")
    parser.add_argument("-t", action="store_true", dest="test", help="test configuration and exit")
    parser.add_argument("-T", action="store_true", dest="dump", help="test configuration, dump it and exit")
    parser.add_argument("-q", action="store_true", dest="quiet", help="suppress non-error messages during configuration testing")
    parser.add_argument("-s", dest="signal", choices=sorted(SIGNALS), help="send signal to a master process")
    parser.add_argument("-p", dest="prefix", help="set prefix path (default: current directory)")
    parser.add_argument("-e", dest="errorlog", help="set error log file")
    parser.add_argument("-c", dest="config", help="set configuration file (default: the embedded demo)")
    parser.add_argument("-g", dest="directives", default="", help="set global directives out of configuration file")
    return parser


def _say(text: str) -> None:
    sys.stderr.write(f"rproxy: {text}\n")


def _globals(options: argparse.Namespace) -> str:
    directives = options.directives
    if options.errorlog:
        directives = f"error_log {options.errorlog};" + directives
    return directives


def _load(options: argparse.Namespace, prefix: str) -> Any:
    from .service import loadConfig

    path = options.config
    if path is None:
        from .demo import DEMO_CONFIG

        path = DEMO_CONFIG
    elif not os.path.isabs(path):
        path = os.path.join(prefix, path)
    config = loadConfig(path=path, prefix=prefix, globalDirectives=_globals(options))
    if not config.mainConf.get("error_log"):
        # nginx's default: logs/error.log under the prefix.
        logs = os.path.join(prefix, "logs")
        os.makedirs(logs, exist_ok=True)
        config = loadConfig(
            path=path, prefix=prefix,
            globalDirectives="error_log logs/error.log;" + _globals(options),
        )
    return config, path


def _pidPath(config: Any) -> str:
    pid = config.mainConf.get("pid")
    return pid if os.path.isabs(pid) else os.path.join(config.prefix, pid)


def main(argv: Optional[List[str]] = None) -> int:
    """
    Run the C{rproxy} command.

    @return: the exit status.
    """
    options = _parser().parse_args(argv)
    if options.help:
        _parser().print_help(sys.stderr)
        return 0
    if options.version or options.verbose:
        _say(f"version: twisted_rproxy/{__version__}")
        if options.verbose:
            import twisted

            _say(f"built on Twisted {twisted.__version__}, Python {sys.version.split()[0]}")
        return 0
    prefix = os.path.abspath(options.prefix or os.getcwd())
    try:
        config, path = _load(options, prefix)
    except (ConfigError, PluginError, OSError) as e:
        _say(f"[emerg] {e}")
        if options.test or options.dump:
            _say(f"configuration file {options.config} test failed")
        return 1
    if options.signal:
        return _sendSignal(config, options.signal)
    if options.test or options.dump:
        if not options.quiet:
            for line in config.notices + config.warnings:
                _say(f"[warn] {line}")
            _say(f"the configuration file {path} syntax is ok")
            _say(f"configuration file {path} test is successful")
        if options.dump:
            sys.stdout.write(f"# configuration file {path}:\n")
            with open(path) as f:
                sys.stdout.write(f.read())
        return 0
    return _run(config, options, prefix)


def _sendSignal(config: Any, name: str) -> int:
    pidPath = _pidPath(config)
    try:
        with open(pidPath) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as e:
        _say(f'[error] invalid PID number in "{pidPath}" ({e})')
        return 1
    try:
        os.kill(pid, SIGNALS[name])
    except OSError as e:
        _say(f"[alert] kill({pid}, {SIGNALS[name]}) failed ({e.strerror})")
        return 1
    return 0


def _daemonize() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _run(config: Any, options: argparse.Namespace, prefix: str) -> int:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from .service import ProxyService

    if config.mainConf.get("daemon"):
        _daemonize()
    service = ProxyService(config, reactor)
    try:
        service.startService()
    except Exception as e:
        # A socket that cannot be bound: report it as nginx does and exit.
        _say(f"[emerg] {e}")
        return 1
    if not config.mainConf.get("daemon"):
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    else:
        globalLogBeginner.beginLoggingTo([], redirectStandardIO=False)
    pidPath = _pidPath(config)
    try:
        with open(pidPath + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(pidPath + ".tmp", pidPath)
    except OSError as e:
        _say(f'[emerg] open() "{pidPath}" failed ({e.strerror})')
        return 1

    def reload(*_: Any) -> None:
        try:
            fresh, _path = _load(options, prefix)
        except (ConfigError, PluginError, OSError) as e:
            from twisted.logger import Logger

            Logger(namespace="rproxy").error(
                "reload failed, keeping the running configuration: {error}", error=str(e)
            )
            return
        service.reload(fresh)

    def stop(*_: Any) -> None:
        reactor.callFromThread(_stop)

    def fastStop(*_: Any) -> None:
        service.fastShutdown = True
        reactor.callFromThread(_stop)

    stopping = []

    def _stop() -> None:
        if stopping:
            return
        stopping.append(True)
        d = service.stopService()
        if d is not None:
            d.addBoth(lambda _: reactor.stop())
        else:
            reactor.stop()

    signal.signal(signal.SIGHUP, lambda *a: reactor.callFromThread(reload))
    signal.signal(signal.SIGUSR1, lambda *a: reactor.callFromThread(service.reopenLogs))
    signal.signal(signal.SIGQUIT, stop)
    # nginx: TERM/INT stop at once, QUIT waits for in-flight requests.
    # Twisted installs its own TERM/INT handlers when run() starts, so ours
    # go in once it is running.
    reactor.callWhenRunning(signal.signal, signal.SIGTERM, fastStop)
    reactor.callWhenRunning(signal.signal, signal.SIGINT, fastStop)
    demo = None
    if options.config is None:
        from .demo import demoBackendService

        demo = demoBackendService(reactor)
        demo.startService()
    reactor.run(installSignalHandlers=True)
    try:
        os.unlink(pidPath)
    except OSError:
        pass
    if demo is not None:
        demo.stopService()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
