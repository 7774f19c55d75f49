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
from .reactor import installIfUnset

SIGNALS = {
    "stop": signal.SIGTERM,
    "quit": signal.SIGQUIT,
    "reload": signal.SIGHUP,
    "reopen": signal.SIGUSR1,
}


def _parser() -> argparse.ArgumentParser:
    """
    @return: the parser of nginx's command-line flags.
    """
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
    parser.add_argument("-e", dest="errorlog", help="set error log file (default: logs/error.log)")
    parser.add_argument("-c", dest="config", help="set configuration file (default: the embedded demo)")
    parser.add_argument("-g", dest="directives", default="", help="set global directives out of configuration file")
    return parser


def _say(text: str) -> None:
    """
    Write one line to standard error as nginx does, prefixed by the
    program name.
    """
    sys.stderr.write(f"rproxy: {text}\n")


#: The error log when neither the config nor C{-e} names one (nginx's).
DEFAULT_ERROR_LOG = "logs/error.log"


def _configPath(options: argparse.Namespace, prefix: str) -> str:
    """
    @return: the config file to read: C{-c} (relative to the prefix, as
        nginx resolves it), else the embedded demo.
    """
    path = options.config
    if path is None:
        from .demo import DEMO_CONFIG

        return DEMO_CONFIG
    return path if os.path.isabs(path) else os.path.join(prefix, path)


def _load(options: argparse.Namespace, prefix: str) -> Any:
    """
    Parse and compile the config once.

    @return: the L{CompiledConfig} and the path it was read from.
    """
    from .master import WORKER_ENV, readConfigData
    from .service import loadConfig

    path = _configPath(options, prefix)
    # nginx's install makes PREFIX/logs, where the default access and error
    # logs and pid file go; make it here, since the prefix is any directory.
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    tree = None
    if os.environ.get(WORKER_ENV):
        # A worker compiles the tree its master checked, not the files.
        path, tree = readConfigData(sys.stdin.buffer)
    config = loadConfig(path=path, prefix=prefix, globalDirectives=options.directives, tree=tree)
    return config, path


def _errorLogDefault(options: argparse.Namespace, prefix: str) -> str:
    """
    @return: the error log used when the config sets no C{error_log}:
        C{-e}, else C{logs/error.log} under the prefix.
    """
    return options.errorlog or DEFAULT_ERROR_LOG


def _pidPath(config: Any) -> str:
    """
    @return: the absolute path of the C{pid} file.
    """
    pid = config.mainConf.get("pid")
    return pid if os.path.isabs(pid) else os.path.join(config.prefix, pid)


def _configFiles(config: Any, path: str) -> List[str]:
    """
    @return: the main config file and every file it included that holds a
        directive, in the order they were read, for C{-T}.
    """
    files = [path]

    def walk(directives: Any) -> None:
        """
        Collect the files of C{directives} and their blocks.
        """
        for directive in directives or ():
            if directive.filename not in files and os.path.isfile(directive.filename):
                files.append(directive.filename)
            walk(directive.block)

    walk(config.tree)
    return files


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
            _say("configure arguments: none (configured at run time by plugins)")
        return 0
    prefix = os.path.abspath(options.prefix or os.getcwd())
    # Before anything imports the global reactor (loading a config does).
    installIfUnset()
    raiseJITTraceLimit()
    try:
        config, path = _load(options, prefix)
    except (ConfigError, PluginError, OSError, EOFError) as e:
        _say(f"[emerg] {e}")
        if options.test or options.dump:
            _say(f"configuration file {_configPath(options, prefix)} test failed")
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
            for name in _configFiles(config, path):
                sys.stdout.write(f"# configuration file {name}:\n")
                with open(name, encoding="utf-8", errors="surrogateescape") as f:
                    text = f.read()
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
                sys.stdout.write("\n")
        return 0
    return _run(config, options, prefix)


def _sendSignal(config: Any, name: str) -> int:
    """
    C{-s NAME}: signal the running instance named by the C{pid} file.

    @return: the exit status.
    """
    pidPath = _pidPath(config)
    try:
        with open(pidPath) as f:
            text = f.read().strip()
    except OSError as e:
        _say(f'[error] open() "{pidPath}" failed ({e.errno}: {e.strerror})')
        return 1
    try:
        pid = int(text)
    except ValueError:
        _say(f'[error] invalid PID number "{text}" in "{pidPath}"')
        return 1
    try:
        os.kill(pid, SIGNALS[name])
    except OSError as e:
        _say(f"[alert] kill({pid}, {int(SIGNALS[name])}) failed ({e.errno}: {e.strerror})")
        return 1
    return 0


def _daemonize() -> None:
    """
    Detach like nginx's C{daemon on}: fork twice, a new session, standard
    streams on /dev/null.  The listening sockets are inherited.
    """
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _run(config: Any, options: argparse.Namespace, prefix: str) -> int:
    """
    Serve C{config} until stopped by a signal: in this process, as a
    master of C{worker_processes} workers, or as one such worker.

    @return: the exit status.
    """
    from .master import WORKER_ENV, workerCount

    masterPid = os.environ.get(WORKER_ENV)
    if masterPid:
        return _serve(config, options, prefix, int(masterPid))
    count = workerCount(config.mainConf.get("worker_processes"))
    if count > 1:
        return _runMaster(config, options, prefix, count)
    return _serve(config, options, prefix, None)


def _startLogging(daemon: bool) -> None:
    """
    Send Twisted's log to standard error, or nowhere once detached (the
    error log observer writes the file either way).
    """
    from twisted.logger import globalLogBeginner, textFileLogObserver

    if daemon:
        globalLogBeginner.beginLoggingTo([], redirectStandardIO=False)
    else:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)


def _writePidFile(config: Any) -> Optional[str]:
    """
    Write this process's pid to the C{pid} file.

    @return: what was written, or C{None} after reporting a failure.
    """
    pidPath = _pidPath(config)
    myPid = f"{os.getpid()}\n"
    try:
        with open(pidPath + ".tmp", "w") as f:
            f.write(myPid)
        os.replace(pidPath + ".tmp", pidPath)
    except OSError as e:
        _say(f'[emerg] open() "{pidPath}" failed ({e.strerror})')
        return None
    return myPid


def _removePidFile(config: Any, myPid: str) -> None:
    """
    Remove the C{pid} file if it is still ours: a newer instance may have
    written its own.
    """
    pidPath = _pidPath(config)
    try:
        with open(pidPath) as f:
            if f.read() == myPid:
                os.unlink(pidPath)
    except OSError:
        pass


def _startDemo(options: argparse.Namespace, reactor: Any) -> Any:
    """
    @return: the demo backend's service, started, when no C{-c} was
        given (the embedded demo config proxies to it), else C{None}.
    """
    if options.config is not None:
        return None
    from .demo import demoBackendService

    demo = demoBackendService(reactor)
    demo.startService()
    return demo


def _serve(config: Any, options: argparse.Namespace, prefix: str, masterPid: Optional[int]) -> int:
    """
    Serve C{config} in this process.  With C{masterPid}, this is one of a
    master's workers: it serves on the master's sockets, and the master
    alone writes the pid file, runs the demo backend and handles reloads.

    @return: the exit status.
    """
    from twisted.internet import reactor as _reactor
    from twisted.logger import Logger

    from .listener import inheritedSockets
    from .service import ProxyService

    # The global reactor provides far more than its declared type says.
    reactor: Any = _reactor
    worker = masterPid is not None
    daemon = config.mainConf.get("daemon") and not worker
    service = ProxyService(
        config, reactor, defaultErrorLog=_errorLogDefault(options, prefix),
        inherited=inheritedSockets() if worker else None,
    )
    try:
        # Bind before detaching, as nginx does, so that a port in use is
        # reported on the terminal and in the exit status.
        service.startService()
    except Exception as e:
        _say(f"[emerg] {e}")
        return 1
    if daemon:
        _daemonize()
    _startLogging(daemon)
    myPid = None
    if not worker:
        myPid = _writePidFile(config)
        if myPid is None:
            return 1
    log = Logger(namespace="rproxy")

    def reload(*_: Any) -> None:
        # Parse and compile in full first: a broken config, or a new listen
        # that cannot be bound, leaves the running one untouched.
        """
        SIGHUP: swap in the config as it now is on disk.
        """
        try:
            fresh, _path = _load(options, prefix)
            service.reload(fresh)
        except (ConfigError, PluginError) as e:
            log.error("reload failed, keeping the running configuration: {error}", error=str(e))
        except Exception as e:
            log.failure("reload failed, keeping the running configuration: {error}", error=str(e))

    def stop(*_: Any) -> None:
        """
        SIGQUIT: stop after in-flight requests finish.
        """
        reactor.callFromThread(_stop)

    def fastStop(*_: Any) -> None:
        """
        SIGTERM/SIGINT: stop at once.
        """
        service.fastShutdown = True
        reactor.callFromThread(_stop)

    stopping: List[bool] = []

    def _stop() -> None:
        """
        Stop the service (once), then the reactor.
        """
        if stopping:
            return
        stopping.append(True)
        d = service.stopService()
        if d is not None:
            d.addBoth(lambda _: reactor.stop())
        else:
            reactor.stop()

    if masterPid is not None:
        # The master reloads by starting new workers, not by signalling
        # this one; and a worker whose master died stops at once.
        from .master import watchMaster

        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        watchMaster(reactor, lambda: fastStop())
    else:
        signal.signal(signal.SIGHUP, lambda *a: reactor.callFromThread(reload))
    signal.signal(signal.SIGUSR1, lambda *a: reactor.callFromThread(service.reopenLogs))
    signal.signal(signal.SIGQUIT, stop)
    # nginx: TERM/INT stop at once, QUIT waits for in-flight requests.
    # Twisted installs its own TERM/INT handlers when run() starts, so ours
    # go in once it is running.
    reactor.callWhenRunning(signal.signal, signal.SIGTERM, fastStop)
    reactor.callWhenRunning(signal.signal, signal.SIGINT, fastStop)
    demo = None if worker else _startDemo(options, reactor)
    reactor.callWhenRunning(freezeStartupObjects)
    reactor.run(installSignalHandlers=True)
    if myPid is not None:
        _removePidFile(config, myPid)
    if demo is not None:
        demo.stopService()
    return 0


def freezeStartupObjects() -> bool:
    """
    Put what start-up made (imported modules, plugins, the compiled
    config: a few hundred thousand objects that live as long as the
    process) out of the cyclic garbage collector's reach, as C{gc.freeze}
    does.  Otherwise each full collection walks them all, tens of
    milliseconds in which no request moves, and those pauses set the
    proxy's tail latency.  Garbage is collected first, so nothing
    collectable is kept for ever.  Configs loaded by a reload are not
    frozen: the one they replace must stay collectable.

    @return: whether they were frozen (PyPy's collector has no C{freeze}).
    """
    import gc

    freeze = getattr(gc, "freeze", None)
    if freeze is None:
        return False
    gc.collect()
    freeze()
    return True


JIT_TRACE_LIMIT = 15000
"""PyPy's C{trace_limit} for the proxy: the most it accepts is below 20,000."""


def raiseJITTraceLimit() -> bool:
    """
    Let PyPy's JIT trace the proxy's request path whole.  A request runs
    from one epoll event to its response's send in one trip round the
    reactor loop, longer than the default limit of 6,000 operations, so
    tracing it aborts ("trace too long", 30 times in a 30 s run) and the
    path is compiled in pieces joined by calls.  At 15,000, 1 KiB requests
    through the benchmark ran about 8 % faster (docs/benchmarks.md).

    @return: whether the limit was set (CPython has no JIT).
    """
    try:
        import pypyjit  # type: ignore[import-not-found]
    except ImportError:
        return False
    pypyjit.set_param(trace_limit=JIT_TRACE_LIMIT)
    return True


def _runMaster(config: Any, options: argparse.Namespace, prefix: str, count: int) -> int:
    """
    Bind the listening sockets, then keep C{count} workers serving on
    them until stopped, as nginx's master process does.

    @return: the exit status.
    """
    from twisted.internet import reactor as _reactor
    from twisted.logger import Logger

    from .errorlog import ErrorLogObserver
    from .listener import ListenError
    from .master import Master, workerCommand, workerCount

    reactor: Any = _reactor
    master = Master(reactor, workerCommand(options, prefix), count)
    try:
        master.bind(config)
    except ListenError as e:
        _say(f"[emerg] {e}")
        return 1
    daemon = config.mainConf.get("daemon")
    if daemon:
        _daemonize()
    _startLogging(daemon)
    errorLog = ErrorLogObserver.fromConfig(config, _errorLogDefault(options, prefix))
    if errorLog is not None:
        errorLog.start()
    myPid = _writePidFile(config)
    if myPid is None:
        return 1
    log = Logger(namespace="rproxy")

    def reload() -> None:
        """
        SIGHUP: check the config on disk, then serve it with new workers
        and write the master's own log where the new config says.
        """
        nonlocal errorLog
        try:
            fresh, _path = _load(options, prefix)
            master.reload(fresh, workerCount(fresh.mainConf.get("worker_processes")))
            moved = ErrorLogObserver.fromConfig(fresh, _errorLogDefault(options, prefix))
            if errorLog is not None:
                errorLog.stop()
            errorLog = moved
            if errorLog is not None:
                errorLog.start()
        except (ConfigError, PluginError, ListenError) as e:
            log.error("reload failed, keeping the running configuration: {error}", error=str(e))
        except Exception as e:
            log.failure("reload failed, keeping the running configuration: {error}", error=str(e))

    def reopen() -> None:
        """
        SIGUSR1: reopen the master's error log and the workers' logs.
        """
        if errorLog is not None:
            errorLog.reopen()
        master.reopen()

    def stop(graceful: bool) -> None:
        """
        Stop the workers (once), then the reactor.
        """
        if not master.stopping:
            master.stop(graceful).addBoth(lambda _: reactor.stop())

    signal.signal(signal.SIGHUP, lambda *a: reactor.callFromThread(reload))
    signal.signal(signal.SIGUSR1, lambda *a: reactor.callFromThread(reopen))
    signal.signal(signal.SIGQUIT, lambda *a: reactor.callFromThread(stop, True))
    reactor.callWhenRunning(signal.signal, signal.SIGTERM, lambda *a: reactor.callFromThread(stop, False))
    reactor.callWhenRunning(signal.signal, signal.SIGINT, lambda *a: reactor.callFromThread(stop, False))
    reactor.callWhenRunning(master.start, config)
    demo = _startDemo(options, reactor)
    reactor.run(installSignalHandlers=True)
    _removePidFile(config, myPid)
    if demo is not None:
        demo.stopService()
    if errorLog is not None:
        errorLog.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
