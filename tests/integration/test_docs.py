"""
The user documentation, checked: every ```nginx block of docs/*.md is
compiled, every page's worked example is run through a real
C{python -m twisted_rproxy} in front of the test backend, and each request
is checked against what the page says (often the page's own tables, read
from the Markdown, so the text and the test cannot drift apart).  The
embedding examples and the example plugin in docs/examples/ run for real
too.

Conventions the pages follow (docs/index.md explains them to readers):

  - C{{port}}, C{{backend}} and C{{dead}} in a config stand for the proxy's
    port, the backend's port, and a port where nothing listens;
  - the info string after C{```nginx} may carry C{id=NAME} (a block a run
    test uses), C{file=PATH} (written to PATH in the prefix before the
    page's other blocks are compiled or run, for C{include}),
    C{error="TEXT"} (the block must fail to load with TEXT), and
    C{notices=a,b} (the ignored directives it names);
  - C{<!-- test-certificates: CERT KEY NAME... -->} on a page makes a
    certificate for the NAMEs (signed by a CA made for the run, whose
    certificate is C{test-ca/ca.pem} in the prefix) and its key at CERT
    and KEY in the prefix before the page's blocks are compiled or run, so
    TLS examples name real files and no key is committed; a first NAME of
    C{client:NAME} makes a client certificate;
  - C{```nginx-fragment context=CONTEXT} is an extract, wrapped into a
    whole config for CONTEXT (C{server} by default) before it is checked;
  - C{```python source=examples/X} must be the file docs/examples/X
    exactly, and C{excerpt=...} must appear in that file, line by line, in
    order;
  - C{<!-- test-table: NAME -->} marks a table whose rows a run test
    replays.

Nothing here waits on a clock: a process is ready when its port accepts,
and a reload is seen when a response changes, each polled with a generous
deadline that only bounds a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from tests.integration.harness import (
    REPO_ROOT,
    Backend,
    Response,
    RproxyRunner,
    ServerRunner,
    freePort,
    proxyConfig,
    rawExchange,
    readUntilClosed,
    request,
)

DOCS = REPO_ROOT / "docs"
EXAMPLES = DOCS / "examples"
PLUGIN_FILE = EXAMPLES / "twisted" / "plugins" / "rproxy_example.py"
BALANCER_PLUGIN_FILE = EXAMPLES / "twisted" / "plugins" / "rproxy_example_balancer.py"
WSFILTERS_PLUGIN_FILE = EXAMPLES / "twisted" / "plugins" / "rproxy_example_wsfilters.py"

DEADLINE = 20.0
"""Seconds a polled condition may take before the test fails (never a wait)."""

COMPILE_PORTS = {
    "port": "8080", "backend": "8000", "dead": "8001", "backend2": "8002", "backend3": "8003",
    "dns": "8053",
    "plain": "8004",
}
"""Placeholder values for the compile-only checks (nothing is bound)."""


# -- reading the pages ---------------------------------------------------


@dataclass(frozen=True)
class Block:
    """
    One fenced code block of a docs page.

    @ivar lang: the first word of the info string (C{nginx}, C{python} ...).
    @ivar attrs: the C{key=value} words after it (a bare word maps to "").
    @ivar line: the line of the opening fence, for test ids and messages.
    """

    page: str
    line: int
    lang: str
    attrs: Dict[str, str]
    text: str

    @property
    def name(self) -> str:
        """A readable test id: page, line and the block's id if any."""
        suffix = f"-{self.attrs['id']}" if "id" in self.attrs else ""
        return f"{self.page}:{self.line}{suffix}"


_FENCE = re.compile(r"^```([^\s`]*)[ \t]*([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def pages() -> List[str]:
    """Every docs page, by file name."""
    return sorted(p.name for p in DOCS.glob("*.md"))


def readBlocks(page: str) -> List[Block]:
    """The fenced blocks of one page, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        attrs: Dict[str, str] = {}
        for word in shlex.split(match.group(2)):
            key, _, value = word.partition("=")
            attrs[key] = value
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(page, line, match.group(1), attrs, match.group(3)))
    return blocks


ALL_BLOCKS = [block for page in pages() for block in readBlocks(page)]
CONFIG_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("nginx", "nginx-fragment")]


def block(page: str, blockId: str) -> Block:
    """The block of C{page} with C{id=blockId}."""
    for candidate in readBlocks(page):
        if candidate.attrs.get("id") == blockId:
            return candidate
    raise LookupError(f"{page} has no block with id={blockId}")


def tableRows(page: str, name: str) -> List[List[str]]:
    """
    The body rows of the table after C{<!-- test-table: name -->}, as lists
    of raw Markdown cells.
    """
    text = (DOCS / page).read_text(encoding="utf-8")
    marker = f"<!-- test-table: {name} -->"
    assert marker in text, f"{page} lost its table {name}"
    lines = text[text.index(marker) + len(marker):].lstrip("\n").splitlines()
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append(splitRow(line))
    assert len(rows) > 2, f"table {name} in {page} has no rows"
    return rows[2:]


def splitRow(line: str) -> List[str]:
    """The cells of a Markdown table row; C{\\|} is a pipe inside a cell."""
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [cell.strip().replace("\\|", "|") for cell in cells]


def allTables(page: str) -> Iterator[List[List[str]]]:
    """Every table of a page, as rows of cells, the header row first."""
    table: List[List[str]] = []
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines() + [""]:
        if line.startswith("|"):
            table.append(splitRow(line))
        elif table:
            yield [table[0]] + table[2:]
            table = []


def codeSpans(cell: str) -> List[str]:
    """The contents of the `code` spans of a table cell."""
    return re.findall(r"`([^`]*)`", cell)


def bold(cell: str) -> str:
    """The **bold** text of a table cell."""
    match = re.search(r"\*\*(.+?)\*\*", cell)
    assert match is not None, f"no bold text in {cell!r}"
    return match.group(1)


# -- configs from blocks ----------------------------------------------------


_PLACEHOLDER = re.compile(r"(?<!\$)\{([a-z][a-z0-9_]*)\}")


def fill(text: str, values: Dict[str, str]) -> str:
    """
    Replace C{{port}}-style placeholders (not C{${var}}); an unknown one is
    an error, so a typo in a page cannot pass as config text.
    """

    def replace(match: "re.Match[str]") -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"unknown placeholder {{{key}}}")
        return values[key]

    return _PLACEHOLDER.sub(replace, text)


def _indent(text: str, depth: int) -> str:
    """Indent every line of C{text} by C{depth} levels."""
    pad = "    " * depth
    return "".join(pad + line + "\n" if line.strip() else "\n" for line in text.splitlines())


def configText(configBlock: Block) -> str:
    """A whole config for a block: itself, or a fragment wrapped for its context."""
    if configBlock.lang == "nginx":
        return configBlock.text
    context = configBlock.attrs.get("context", "server")
    body = configBlock.text
    listen = "" if re.search(r"(?m)^\s*listen\s", body) else "listen 127.0.0.1:{port};\n"
    if context == "main":
        return body + "\nevents {\n}\n"
    if context == "http":
        return "events {\n}\n\nhttp {\n" + _indent(body, 1) + "}\n"
    if context == "server":
        inner = listen + body
    elif context == "location":
        inner = listen + "\nlocation / {\n" + _indent(body, 1) + "}\n"
    elif context == "upstream":
        return (
            "events {\n}\n\nhttp {\n    upstream fragment {\n" + _indent(body, 2)
            + "    }\n\n    server {\n        listen 127.0.0.1:{port};\n\n"
            "        location / {\n            proxy_pass http://fragment;\n"
            "        }\n    }\n}\n"
        )
    else:
        raise ValueError(f"{configBlock.name}: unknown fragment context {context!r}")
    return "events {\n}\n\nhttp {\n    server {\n" + _indent(inner, 2) + "    }\n}\n"


def pageFiles(page: str) -> List[Block]:
    """The blocks of a page that are files for the others (C{file=PATH})."""
    return [b for b in readBlocks(page) if b.lang.startswith("nginx") and b.attrs.get("file")]


def writePageFiles(page: str, directory: Path, values: Dict[str, str]) -> None:
    """
    Write a page's C{file=} blocks under C{directory}, placeholders filled,
    and its test certificates (see L{writePageCertificates}).
    """
    for fileBlock in pageFiles(page):
        target = directory / fileBlock.attrs["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(fill(fileBlock.text, values), encoding="utf-8")
    writePageCertificates(page, directory)


_CERTIFICATES = re.compile(r"<!-- test-certificates: ([^>]+?) -->")


def pageCertificates(page: str) -> List[List[str]]:
    """The C{[CERT, KEY, NAME...]} of a page's C{test-certificates} comments."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return [match.group(1).split() for match in _CERTIFICATES.finditer(text)]


def writePageCertificates(page: str, directory: Path) -> Optional[Path]:
    """
    Make the certificates a page's C{test-certificates} comments ask for,
    under C{directory}, signed by a CA made now.

    @return: the CA certificate's path, or C{None} when the page asks for
        none.
    """
    wanted = pageCertificates(page)
    if not wanted:
        return None
    from tests.integration.certs import CertificateAuthority

    ca = CertificateAuthority(directory / "test-ca")
    for certPath, keyPath, *names in wanted:
        # "client:NAME" asks for a client certificate (clientAuth usage).
        client = names[0].startswith("client:")
        if client:
            names = [names[0][len("client:"):]] + names[1:]
        ca.issue(names, directory / certPath, directory / keyPath, client=client)
    return ca.certPath


def exampleModule(path: Path = PLUGIN_FILE) -> Any:
    """An example plugin's Python module, imported from its file."""
    spec = importlib.util.spec_from_file_location(f"docs_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def modulesFor(page: str) -> List[Any]:
    """The feature modules a page's configs are compiled with."""
    from twisted_rproxy.plugins import builtinModules

    modules = builtinModules()
    if page == "plugins.md":
        modules.append(exampleModule().requestIdModule)
    if page == "plugins-balancer.md":
        modules.append(exampleModule(BALANCER_PLUGIN_FILE).stickyHeaderModule)
    if page == "plugins-websocket.md":
        modules.append(exampleModule(WSFILTERS_PLUGIN_FILE).webSocketFiltersModule)
    return modules


def compileBlock(configBlock: Block, prefix: Path) -> Any:
    """Compile a block in-process, in a prefix holding its page's files."""
    from twisted_rproxy.service import loadConfig

    (prefix / "logs").mkdir(exist_ok=True)
    writePageFiles(configBlock.page, prefix, COMPILE_PORTS)
    return loadConfig(
        text=fill(configText(configBlock), COMPILE_PORTS),
        prefix=str(prefix),
        modules=modulesFor(configBlock.page),
    )


# -- running things ---------------------------------------------------------


def pythonEnv(*extraPaths: Path) -> Dict[str, str]:
    """An environment whose Python imports this checkout (and C{extraPaths})."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT)] + [str(p) for p in extraPaths]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DocsRunner(RproxyRunner):
    """
    C{python -m twisted_rproxy} on a docs config, optionally with more
    directories on its path (the example plugin's).
    """

    def __init__(self, confText: str, extraPaths: Sequence[Path] = (), **kwargs: Any) -> None:
        """Prepare the runner; C{extraPaths} go on PYTHONPATH."""
        super().__init__(confText, **kwargs)
        self.extraPaths = list(extraPaths)

    def environment(self) -> Optional[Dict[str, str]]:
        """This checkout first, then the extra paths."""
        return pythonEnv(*self.extraPaths)


class CommandRunner(ServerRunner):
    """
    Any server command (twistd, an example script), run in a fresh prefix
    directory as its working directory and ready once C{port} accepts.
    """

    label = "example"

    def __init__(self, argv: Sequence[str], port: int, env: Dict[str, str]) -> None:
        """Prepare C{argv}, to be started with L{start}."""
        super().__init__("", addresses=[("127.0.0.1", port)])
        self.argv = list(argv)
        self.env = env

    def command(self) -> List[str]:
        """The argv as given."""
        return self.argv

    @property
    def errorLogPath(self) -> Path:
        """Its standard error is its log."""
        return self.prefix / "stderr.log"

    def environment(self) -> Optional[Dict[str, str]]:
        """The environment given."""
        return self.env


@dataclass
class Proxy:
    """A started proxy: its runner, its port and the placeholder values."""

    runner: ServerRunner
    port: int
    values: Dict[str, str]

    def get(self, path: str, **kwargs: Any) -> Response:
        """One request to this proxy."""
        return request(self.port, path=path, **kwargs)


@pytest.fixture
def serve(request: pytest.FixtureRequest, backend: Backend) -> Callable[..., Proxy]:
    """
    Factory: C{serve(page, blockId, extraPaths=())} runs that block through
    a real proxy process in front of the module's backend, with its page's
    C{file=} blocks in the prefix; every proxy is stopped at the end.
    """
    made: List[ServerRunner] = []

    def cleanup() -> None:
        """Stop every proxy this test started."""
        for runner in reversed(made):
            runner.cleanup()

    request.addfinalizer(cleanup)

    def start(page: str, blockId: str, extraPaths: Sequence[Path] = (),
              moreValues: Optional[Dict[str, str]] = None) -> Proxy:
        """
        Start the proxy for one block and return once it accepts;
        C{moreValues} are placeholders the block uses beyond the usual
        three (the ports of more backends).
        """
        port = freePort()
        values = {"port": str(port), "backend": str(backend.port), "dead": str(freePort())}
        values.update(moreValues or {})
        text = fill(configText(block(page, blockId)), values)
        runner = DocsRunner(text, extraPaths, addresses=[("127.0.0.1", port)])
        made.append(runner)
        writePageFiles(page, runner.prefix, values)
        runner.start()
        return Proxy(runner, port, values)

    return start


@pytest.fixture
def commands(request: pytest.FixtureRequest) -> Callable[..., CommandRunner]:
    """
    Factory: C{commands(argv, port, env, files)} makes a L{CommandRunner}
    with C{files} (name to text) in its working directory, and starts it;
    all are stopped at the end.
    """
    made: List[CommandRunner] = []

    def cleanup() -> None:
        """Stop every command this test started."""
        for runner in reversed(made):
            runner.cleanup()

    request.addfinalizer(cleanup)

    def start(argv: Sequence[str], port: int, env: Dict[str, str],
              files: Optional[Dict[str, str]] = None) -> CommandRunner:
        """Write the files, start the command, wait for its port."""
        runner = CommandRunner(argv, port, env)
        made.append(runner)
        for name, text in (files or {}).items():
            (runner.prefix / name).write_text(text, encoding="utf-8")
        runner.start()
        return runner

    return start


def rproxyCommand(*args: str, extraPaths: Sequence[Path] = ()) -> "subprocess.CompletedProcess[str]":
    """Run C{python -m twisted_rproxy ARGS} to completion."""
    return subprocess.run(
        [sys.executable, "-m", "twisted_rproxy", *args],
        env=pythonEnv(*extraPaths), capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )


def pollUntil(condition: Callable[[], Any], what: str) -> Any:
    """
    Call C{condition} until it returns something true and return that;
    fail after L{DEADLINE} seconds (a bound on failure, not a wait).
    """
    deadline = time.monotonic() + DEADLINE
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def echoHeaders(response: Response) -> Dict[str, str]:
    """The request headers the backend saw, by lowercase name."""
    assert response.status == 200, response
    return {name.lower(): value for name, value in response.json()["headers"]}


def bodyText(response: Response) -> str:
    """The response body as text, without its final newline."""
    return response.body.decode("utf-8").rstrip("\n")


# -- checks of every page ---------------------------------------------------


@pytest.mark.parametrize("configBlock", CONFIG_BLOCKS, ids=[b.name for b in CONFIG_BLOCKS])
def testConfigBlockLoads(configBlock: Block, tmp_path: Path) -> None:
    """
    Every config block of the docs compiles, with no warnings and with
    exactly the notices it says it gives; a block documenting an error
    fails with that error.
    """
    from twisted_rproxy.config.errors import ConfigError

    if "error" in configBlock.attrs:
        with pytest.raises(ConfigError) as caught:
            compileBlock(configBlock, tmp_path)
        assert configBlock.attrs["error"] in str(caught.value)
        return
    config = compileBlock(configBlock, tmp_path)
    assert config.warnings == []
    expected = [n for n in configBlock.attrs.get("notices", "").split(",") if n]
    named = [re.search(r'directive "([^"]+)"', notice).group(1) for notice in config.notices]
    assert named == expected


def testEveryPageHasABlockThatRuns() -> None:
    """
    Every page with config examples has a worked one (with an id) that a
    run test below uses, and every id a run test asks for exists.
    """
    for page in pages():
        configs = [b for b in readBlocks(page) if b.lang.startswith("nginx")]
        if configs:
            assert any("id" in b.attrs for b in configs), page
    for page, blockId in RUN_BLOCKS:
        block(page, blockId)


def _allDocsText() -> str:
    """Every page's text, joined."""
    return "\n".join((DOCS / page).read_text(encoding="utf-8") for page in pages())


def testEveryDirectiveIsDocumented() -> None:
    """
    Every directive a built-in module declares is named in the docs as
    code, ignored ones included, so no feature goes undocumented.
    """
    from twisted_rproxy.plugins import builtinModules

    text = _allDocsText()
    missing = set()
    for module in builtinModules():
        for directiveSpec in module.directives():
            if not re.search("`" + re.escape(directiveSpec.name) + r"(?=[`\s;])", text):
                missing.add(directiveSpec.name)
    assert sorted(missing) == []


def testIgnoredDirectivesTable() -> None:
    """
    config.md's table of directives accepted with a notice is exactly the
    set the built-in modules declare as ignored.
    """
    from twisted_rproxy.plugins import builtinModules

    ignored = {s.name for m in builtinModules() for s in m.directives() if s.ignored}
    listed = {name for row in tableRows("config.md", "ignored") for name in codeSpans(row[1])}
    assert sorted(listed ^ ignored) == []


def testDocumentedDefaultsMatch() -> None:
    """
    In every table with a Default column, a default given as code for a
    directive is the default that directive really has (parsed by the
    directive's own parser, so C{1m} and C{60s} compare as values).
    """
    from twisted_rproxy.config.ast import Directive
    from twisted_rproxy.plugins import builtinModules

    specs: Dict[str, List[Any]] = {}
    for module in builtinModules():
        for directiveSpec in module.directives():
            specs.setdefault(directiveSpec.name, []).append(directiveSpec)
    checked = 0
    for page in pages():
        for table in allTables(page):
            if "Default" not in table[0]:
                continue
            column = table[0].index("Default")
            for row in table[1:]:
                names, values = codeSpans(row[0]), codeSpans(row[column])
                if not names or len(values) != 1:
                    continue
                name = names[0].split()[0]
                candidates = [
                    d for d in specs.get(name, ())
                    if "upstream" not in table[0][0] or "upstream" in d.contexts
                ]
                candidates = [d for d in candidates if d.default is not None]
                if not candidates:
                    continue
                directive = Directive(name, tuple(values[0].split()), None, page, 0)
                assert any(d.parse(directive) == d.default for d in candidates), (page, row)
                checked += 1
    assert checked >= 25


def _documentedVariables() -> List[str]:
    """The C{$names} in the first column of variables.md's tables."""
    names = []
    for line in (DOCS / "variables.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`\$([A-Za-z0-9_]+)`", line)
        if match:
            names.append(match.group(1))
    return names


def testEveryVariableIsDocumented() -> None:
    """
    variables.md lists exactly the variables the built-in modules provide:
    C{$http_NAME}-style rows stand for prefix families.
    """
    from twisted_rproxy.plugins import builtinModules

    from twisted_rproxy.variables import VariableTable

    specs = [v for module in builtinModules() for v in module.variables()]
    provided = {v.name + ("NAME" if v.prefix else "") for v in specs}
    documented = set(_documentedVariables()) - {"1", "NAME"}
    assert sorted(provided - documented) == []
    table = VariableTable(specs)
    unknown = {n for n in documented - provided if not table.has(n)}
    assert sorted(unknown) == []


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def testLinksResolve() -> None:
    """Every relative link between pages, and its #anchor, exists."""
    for page in pages():
        text = (DOCS / page).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            targetFile = (DOCS / page).parent / path if path else DOCS / page
            assert targetFile.exists(), f"{page} links to missing {target}"
            if anchor:
                headings = re.findall(r"(?m)^#+ (.+)$", targetFile.read_text(encoding="utf-8"))
                assert anchor in {_slug(h) for h in headings}, f"{page}: {target}"


def _stripped(text: str) -> List[str]:
    """Non-blank lines without their indentation."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def testPythonBlocksAreTheExampleFiles() -> None:
    """
    A C{source=} block is its example file, exactly; an C{excerpt=} block's
    lines all appear in its file, in order (C{...} skips).
    """
    checked = 0
    for codeBlock in ALL_BLOCKS:
        if "source" in codeBlock.attrs:
            path = DOCS / codeBlock.attrs["source"]
            assert codeBlock.text == path.read_text(encoding="utf-8"), codeBlock.name
            checked += 1
        if "excerpt" in codeBlock.attrs:
            fileLines = iter(_stripped((DOCS / codeBlock.attrs["excerpt"]).read_text(encoding="utf-8")))
            for line in _stripped(codeBlock.text):
                if line == "...":
                    continue
                assert line in fileLines, f"{codeBlock.name}: {line!r} not in order in the file"
            checked += 1
    assert checked >= 8


def testExamplePluginShape() -> None:
    """
    The example plugin provides IProxyModule and sits in a plugin
    directory without __init__.py files, as plugins.md says it must.
    """
    from zope.interface.verify import verifyObject

    from twisted_rproxy.interfaces import IProxyModule

    assert not (EXAMPLES / "twisted" / "__init__.py").exists()
    assert not (EXAMPLES / "twisted" / "plugins" / "__init__.py").exists()
    assert verifyObject(IProxyModule, exampleModule().requestIdModule)
    assert verifyObject(IProxyModule, exampleModule(BALANCER_PLUGIN_FILE).stickyHeaderModule)


# -- one run per page ------------------------------------------------------

RUN_BLOCKS = [
    ("plugins-websocket.md", "ws-filters"),  # tests/integration/test_websocket.py
    ("index.md", "quickstart"),
    ("config.md", "main-with-include"),
    ("routing.md", "servers"),
    ("routing.md", "locations"),
    ("routing.md", "slash"),
    ("routing.md", "body-limit"),
    ("proxy.md", "uri-rules"),
    ("proxy.md", "set-header"),
    ("proxy.md", "read-timeout"),
    ("proxy.md", "intercept"),
    ("proxy.md", "upgrade"),
    ("upstream.md", "failover"),
    ("upstream.md", "keepalive"),
    ("upstream.md", "resolve"),
    ("headers.md", "inheritance"),
    ("return.md", "errors"),
    ("map.md", "plans"),
    ("logging.md", "logs"),
    ("variables.md", "show-variables"),
    ("cli.md", "reload"),
    ("cli.md", "workers"),
    ("embedding.md", "app-conf"),
    ("plugins.md", "request-id"),
    ("plugins-balancer.md", "sticky-header"),
    ("tls.md", "https"),
    ("tls.md", "redirect"),
    ("http2.md", "h2"),
    ("tls.md", "client-certificates"),
    ("upstream-tls.md", "verified"),
    ("tls.md", "tls-errors"),
]
"""Every (page, block id) a run test below starts a proxy for."""


def testIndexQuickstart(serve: Callable[..., Proxy]) -> None:
    """The first config: health checks answered locally, the rest proxied with forwarding headers."""
    proxy = serve("index.md", "quickstart")
    health = proxy.get("/health")
    assert (health.status, health.body) == (200, b"ok\n")
    response = proxy.get("/hello?x=1")
    assert response.json()["uri"] == "/hello?x=1"
    seen = echoHeaders(response)
    assert seen["host"] == "localhost"
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-for"] == "127.0.0.1"


def testConfigIncludeAndCheck(serve: Callable[..., Proxy], tmp_path: Path) -> None:
    """
    config.md: a main file including conf.d/*.conf serves the included
    site; -t reports ignored directives as notices, an error with FILE:LINE
    and status 1, and accepts a conf.d file on its own.
    """
    proxy = serve("config.md", "main-with-include")
    assert proxy.get("/app/x").json()["uri"] == "/x"

    writePageFiles("config.md", tmp_path, COMPILE_PORTS)
    stock = tmp_path / "nginx.conf"
    stock.write_text(fill(block("config.md", "stock").text, COMPILE_PORTS), encoding="utf-8")
    result = rproxyCommand("-t", "-p", str(tmp_path), "-c", str(stock))
    assert result.returncode == 0, result.stderr
    assert f"the configuration file {stock} syntax is ok" in result.stderr
    assert f"configuration file {stock} test is successful" in result.stderr
    for name in ("user", "worker_connections", "sendfile"):
        assert f'directive "{name}" has no effect in twisted_rproxy and is ignored in {stock}:' in result.stderr

    broken = [b for b in readBlocks("config.md") if "error" in b.attrs][0]
    bad = tmp_path / "bad.conf"
    bad.write_text(fill(broken.text, COMPILE_PORTS), encoding="utf-8")
    line = 1 + broken.text.splitlines().index("            prox_pass http://127.0.0.1:{backend};")
    result = rproxyCommand("-t", "-p", str(tmp_path), "-c", str(bad))
    assert result.returncode == 1
    assert f'[emerg] unknown directive "prox_pass" in {bad}:{line}' in result.stderr
    assert "test failed" in result.stderr

    result = rproxyCommand("-t", "-p", str(tmp_path), "-c", "conf.d/app.conf")
    assert result.returncode == 0, result.stderr


def testRoutingServerNames(serve: Callable[..., Proxy]) -> None:
    """routing.md's server_name table, row by row."""
    proxy = serve("routing.md", "servers")
    for row in tableRows("routing.md", "servers"):
        host = codeSpans(row[0])[0]
        response = proxy.get("/", host=host)
        assert (host, bodyText(response)) == (host, bold(row[1]))


def testRoutingLocations(serve: Callable[..., Proxy]) -> None:
    """routing.md's location table, row by row."""
    proxy = serve("routing.md", "locations")
    for row in tableRows("routing.md", "locations"):
        path = codeSpans(row[0])[0]
        assert (path, bodyText(proxy.get(path))) == (path, bold(row[1]))


def testRoutingTrailingSlashRedirect(serve: Callable[..., Proxy]) -> None:
    """A proxied prefix location ending in / redirects the bare path to it."""
    proxy = serve("routing.md", "slash")
    response = proxy.get("/app?x=1")
    assert response.status == 301
    assert response.header("Location") == f"http://localhost:{proxy.port}/app/?x=1"
    assert proxy.get("/app/x").json()["uri"] == "/x"


def testRoutingBodyLimit(serve: Callable[..., Proxy]) -> None:
    """client_max_body_size 16: a 20-byte POST gets 413, a small one passes."""
    proxy = serve("routing.md", "body-limit")
    response = proxy.get("/upload", method="POST", body=b"x" * 20)
    assert response.status == 413
    assert proxy.get("/upload", method="POST", body=b"x" * 16).json()["body_len"] == 16


def testProxyURIRules(serve: Callable[..., Proxy]) -> None:
    """proxy.md's table of the URI sent upstream, row by row."""
    proxy = serve("proxy.md", "uri-rules")
    for row in tableRows("proxy.md", "uri-rules"):
        path, expected = codeSpans(row[0])[0], codeSpans(row[2])[0]
        assert (path, proxy.get(path).json()["uri"]) == (path, expected)


def testProxySetHeader(serve: Callable[..., Proxy]) -> None:
    """
    proxy_set_header: the forwarding headers, an empty value removing a
    header, and hop-by-hop headers (those the client's Connection names
    too) not passed on.
    """
    proxy = serve("proxy.md", "set-header")
    response = proxy.get("/", headers=[
        ("Host", "www.example.com"), ("X-Forwarded-For", "203.0.113.7"),
        ("Accept-Encoding", "gzip"), ("Connection", "X-Private"), ("X-Private", "1"),
        ("X-Other", "kept"),
    ])
    seen = echoHeaders(response)
    assert response.json()["version"] == "HTTP/1.0"
    assert seen["host"] == "www.example.com"
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["connection"] == "close"
    assert seen["x-other"] == "kept"
    assert "accept-encoding" not in seen
    assert "x-private" not in seen


def testProxyReadTimeout(serve: Callable[..., Proxy]) -> None:
    """A backend that never answers gets a 504 once proxy_read_timeout passes."""
    proxy = serve("proxy.md", "read-timeout")
    response = proxy.get("/stall")
    assert response.status == 504
    assert b"504 Gateway Time-out" in response.body


def testProxyInterceptErrors(serve: Callable[..., Proxy]) -> None:
    """With proxy_intercept_errors, a backend 500 becomes the named location's page."""
    proxy = serve("proxy.md", "intercept")
    response = proxy.get("/status/500")
    assert (response.status, response.body) == (503, b"down for maintenance\n")
    passed = proxy.get("/status/404")
    assert (passed.status, passed.body) == (404, b"status 404\n")


class UpgradeBackend:
    """
    A backend that answers any request with 101 and then echoes what it
    gets, upper-cased: enough to see an Upgrade tunnel carry bytes.

    @ivar heads: the request heads received.
    """

    def __init__(self) -> None:
        """Listen on a free port and serve connections in a thread."""
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.heads: List[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        """Accept connections until the socket is closed."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(DEADLINE)
                try:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    self.heads.append(head)
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                                 b"Upgrade: shout\r\nConnection: Upgrade\r\n\r\n")
                    while True:
                        data = conn.recv(4096)
                        if not data:
                            break
                        conn.sendall(data.upper())
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting."""
        self.sock.close()


def testProxyUpgradeTunnel() -> None:
    """
    The Upgrade example: the backend gets Upgrade and Connection, the
    client gets the 101 with the backend's Upgrade header, then bytes flow
    both ways through the joined connections.
    """
    upgrade = UpgradeBackend()
    try:
        port = freePort()
        text = fill(configText(block("proxy.md", "upgrade")), {
            "port": str(port), "backend": str(upgrade.port), "dead": str(freePort()),
        })
        runner = DocsRunner(text, addresses=[("127.0.0.1", port)])
        try:
            runner.start()
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
                client.sendall(b"GET /ws/chat HTTP/1.1\r\nHost: localhost\r\n"
                               b"Upgrade: shout\r\nConnection: Upgrade\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = client.recv(4096)
                    assert chunk, head
                    head += chunk
                head, _, early = head.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                assert lines[0].startswith(b"HTTP/1.1 101 ")
                headers = {n.lower(): v.strip() for n, _, v in (l.partition(b":") for l in lines[1:])}
                assert headers[b"upgrade"] == b"shout"
                client.sendall(b"hello")
                received = early
                while len(received) < 5:
                    chunk = client.recv(4096)
                    assert chunk, received
                    received += chunk
                assert received == b"HELLO"
        finally:
            runner.cleanup()
        sent = upgrade.heads[0].lower()
        assert b"\r\nupgrade: shout\r\n" in sent
        assert b"\r\nconnection: upgrade\r\n" in sent
        assert sent.startswith(b"get /ws/chat http/1.1\r\n")
    finally:
        upgrade.close()


def testProxyHideHeader(backend: Any, rproxyRunner: Any) -> None:
    """
    proxy_hide_header removes a backend header and proxy_pass_header lets
    a normally hidden one (Server) through, as proxy.md says.
    """
    port = freePort()
    rproxyRunner(proxyConfig(
        port,
        f"location / {{ proxy_pass http://{backend.address};"
        " proxy_hide_header X-Secret; proxy_pass_header Server; }",
    ))
    response = request(port, path="/header?name=X-Secret&value=s3cret")
    assert response.status == 200
    assert response.header("X-Secret") is None
    assert "TwistedWeb" in (response.header("Server") or "")


def testUpstreamFailover(serve: Callable[..., Proxy]) -> None:
    """A dead first peer is tried, then the live one answers; both show in $upstream_addr."""
    proxy = serve("upstream.md", "failover")
    response = proxy.get("/x")
    assert response.status == 200
    assert response.json()["uri"] == "/x"
    values = proxy.values
    assert response.header("X-Upstream") == (
        f"127.0.0.1:{values['dead']}, 127.0.0.1:{values['backend']}"
    )
    proxy.runner.stop()
    assert "connect() failed (111: Connection refused) while connecting to upstream" in (
        proxy.runner.errorLog
    )


def testUpstreamHealthCheck(serve: Callable[..., Proxy]) -> None:
    """
    The active check takes the dead peer out before any user request: once
    the error log says so, even the first request goes straight to the
    live peer.
    """
    proxy = serve("upstream.md", "health-check")
    values = proxy.values
    deadline = time.monotonic() + DEADLINE
    line = f"peer 127.0.0.1:{values['dead']} is unhealthy (health check failed: connect() failed"
    while line not in proxy.runner.errorLog:
        assert time.monotonic() < deadline, proxy.runner.errorLog
        time.sleep(0.05)
    for _ in range(4):
        response = proxy.get("/x")
        assert response.status == 200
        assert response.header("X-Upstream") == f"127.0.0.1:{values['backend']}"


def testUpstreamKeepalive(serve: Callable[..., Proxy]) -> None:
    """With keepalive, HTTP/1.1 and Connection "", requests share one backend connection."""
    proxy = serve("upstream.md", "keepalive")
    first = proxy.get("/one").json()
    second = proxy.get("/two").json()
    assert first["version"] == "HTTP/1.1"
    assert second["connection"] == first["connection"]
    assert second["requests_on_connection"] == first["requests_on_connection"] + 1


def testUpstreamResolve(serve: Callable[..., Proxy]) -> None:
    """
    The page's resolve example against a real DNS server: requests follow
    app.internal.test from 127.0.0.2 to 127.0.0.3 as its answer changes,
    within the page's one-second C{valid=} (polled, never waited for).
    """
    from tests.integration.harness import DNSServer

    with DNSServer({"app.internal.test": ["127.0.0.2"]}) as dns, \
            Backend("two", host="127.0.0.2") as two, \
            Backend("three", host="127.0.0.3", port=two.port):
        proxy = serve("upstream.md", "resolve",
                      moreValues={"dns": str(dns.port), "backend": str(two.port)})

        def answeredBy(name: str) -> bool:
            response = proxy.get("/x")
            return response.status == 200 and response.json()["name"] == name

        pollUntil(lambda: answeredBy("two"), "the first answer")
        assert proxy.get("/x").header("X-Upstream") == f"127.0.0.2:{two.port}"
        dns.setRecords({"app.internal.test": ["127.0.0.3"]})
        pollUntil(lambda: answeredBy("three"), "the changed answer")
        assert proxy.get("/x").header("X-Upstream") == f"127.0.0.3:{two.port}"


def testHeadersInheritance(serve: Callable[..., Proxy]) -> None:
    """headers.md's add_header inheritance table, row by row."""
    proxy = serve("headers.md", "inheritance")
    known = {"X-Frame-Options", "X-Served-By", "Cache-Control"}
    for row in tableRows("headers.md", "inheritance"):
        path = codeSpans(row[0])[0]
        response = proxy.get(path)
        assert (path, response.status) == (path, int(row[1]))
        expected = {name for name in codeSpans(row[2]) if name in known}
        present = {name for name in known if response.header(name) is not None}
        assert (path, present) == (path, expected)


def testReturnAndErrorPage(serve: Callable[..., Proxy]) -> None:
    """return.md's worked table, row by row (444: no response at all)."""
    proxy = serve("return.md", "errors")
    for row in tableRows("return.md", "errors"):
        path = codeSpans(row[0])[0]
        if row[1] == "none":
            raw = rawExchange(proxy.port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert (path, raw) == (path, b"")
            continue
        response = proxy.get(path)
        assert (path, response.status) == (path, int(row[1]))
        expected = codeSpans(row[2])[0].replace("PORT", str(proxy.port))
        if expected.startswith("Location: "):
            assert response.header("Location") == expected[len("Location: "):]
        else:
            assert (path, bodyText(response)) == (path, expected)


def testMapPlans(serve: Callable[..., Proxy]) -> None:
    """map.md's tables, row by row, and the map in proxy_set_header."""
    proxy = serve("map.md", "plans")
    for row in tableRows("map.md", "plans"):
        host = codeSpans(row[0])[0]
        plan = codeSpans(row[1])
        headers = [("X-Plan", plan[0])] if plan else None
        response = proxy.get("/", host=host, headers=headers)
        assert (host, plan, bodyText(response)) == (host, plan, codeSpans(row[2])[0])
    seen = echoHeaders(proxy.get("/api/x", headers=[("X-Plan", "pro")]))
    assert seen["x-rate-limit"] == "100"
    for row in tableRows("map.md", "areas"):
        path, expected = codeSpans(row[0])[0], codeSpans(row[1])[0]
        assert (path, bodyText(proxy.get(path))) == (path, expected)


def testLoggingExample(serve: Callable[..., Proxy]) -> None:
    """logging.md's worked example: the three access logs and the error log."""
    proxy = serve("logging.md", "logs")
    assert proxy.get("/hello", headers=[("User-Agent", 'say "hi"')]).status == 200
    assert proxy.get("/status/404").status == 404
    assert proxy.get("/down/").status == 502
    assert proxy.get("/health").status == 200
    proxy.runner.stop()  # every line is written by now
    logs = proxy.runner.prefix / "logs"

    main = (logs / "access.log").read_text().splitlines()
    assert len(main) == 3
    assert re.fullmatch(
        r'127\.0\.0\.1 "GET /hello HTTP/1\.1" 200 \d+ upstream=127\.0\.0\.1:'
        + proxy.values["backend"], main[0]), main[0]

    jsonLines = (logs / "access.json").read_text().splitlines()
    assert jsonLines[0] == '{"uri":"/hello","status":200,"agent":"say \\"hi\\""}'
    assert [json.loads(line)["status"] for line in jsonLines] == [200, 404, 502]

    failed = (logs / "failed.log").read_text().splitlines()
    assert [line.split('"')[2].split()[0] for line in failed] == ["404", "502"]
    assert all("/health" not in line for line in main + jsonLines + failed)
    assert "connect() failed" in (logs / "error.log").read_text()


def testVariablesExample(serve: Callable[..., Proxy]) -> None:
    """variables.md: the request shown there, and the table of values the backend sees."""
    proxy = serve("variables.md", "show-variables")
    shown = block("variables.md", "variables-request").text.splitlines()
    method, target, _version = shown[0].split(" ")
    headers = [tuple(line.split(": ", 1)) for line in shown[1:] if line]
    seen = echoHeaders(proxy.get(target, method=method, headers=headers, host=None))
    for row in tableRows("variables.md", "show-variables"):
        name, expected = codeSpans(row[0])[0], codeSpans(row[1])[0]
        header = "x-" + name[1:].replace("_", "-")
        assert (name, seen.get(header)) == (name, expected)


def testCliReloadAndQuit(serve: Callable[..., Proxy]) -> None:
    """
    cli.md: -s reload switches to the edited config; a broken config
    leaves the running one (SIGHUP logs why, -s reload refuses to signal);
    -s quit stops the process and removes its pid file.
    """
    proxy = serve("cli.md", "reload")
    runner = proxy.runner
    assert bodyText(proxy.get("/")) == "version 1"
    args = ("-p", str(runner.prefix), "-c", str(runner.confPath))
    pidFile = runner.prefix / "logs" / "rproxy.pid"
    assert int(pidFile.read_text()) == runner.process.pid

    runner.confPath.write_text(runner.confText.replace("version 1", "version 2"))
    result = rproxyCommand(*args, "-s", "reload")
    assert result.returncode == 0, result.stderr
    pollUntil(lambda: bodyText(proxy.get("/")) == "version 2", "the reload")

    runner.confPath.write_text(runner.confText.replace("return 200", "retrun 200"))
    result = rproxyCommand(*args, "-s", "reload")
    assert result.returncode == 1
    assert 'unknown directive "retrun"' in result.stderr
    os.kill(runner.process.pid, signal.SIGHUP)
    pollUntil(lambda: "reload failed, keeping the running configuration" in runner.errorLog,
              "the failed reload to be logged")
    assert bodyText(proxy.get("/")) == "version 2"

    runner.confPath.write_text(runner.confText)
    result = rproxyCommand(*args, "-s", "quit")
    assert result.returncode == 0, result.stderr
    pollUntil(lambda: not runner.isRunning(), "the process to quit")
    assert not pidFile.exists()


def testCliWorkers(serve: Callable[..., Proxy]) -> None:
    """
    cli.md: worker_processes 2 answers from two worker processes, neither
    of them the master named by the pid file, and still proxies.
    """
    proxy = serve("cli.md", "workers")
    pidFile = proxy.runner.prefix / "logs" / "rproxy.pid"
    # The port accepts as soon as the master has bound it, a moment before
    # the pid file is written.
    master = int(pollUntil(lambda: pidFile.exists() and pidFile.read_text(), "the pid file"))
    assert master == proxy.runner.process.pid
    seen: set = set()
    pollUntil(lambda: seen.add(bodyText(proxy.get("/pid")).strip()) or len(seen) == 2,
              "both workers to answer")
    assert str(master) not in seen
    assert proxy.get("/hello").json()["uri"] == "/hello"


def testTwistdCheck(tmp_path: Path) -> None:
    """cli.md: twistd rproxy --test checks a config like rproxy -t."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(fill(block("cli.md", "reload").text, COMPILE_PORTS), encoding="utf-8")
    (tmp_path / "logs").mkdir()
    result = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "rproxy", "--test", "-c", str(conf)],
        env=pythonEnv(), capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def _twistdArgv(*args: str) -> List[str]:
    """C{twistd ARGS} with this interpreter."""
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args]


def testEmbeddingApplication(commands: Callable[..., CommandRunner], backend: Backend) -> None:
    """
    embedding.md: proxy_app.tac under twistd serves rproxy.conf and
    reloads it on SIGHUP.
    """
    port = freePort()
    values = {"port": str(port), "backend": str(backend.port), "dead": str(freePort())}
    conf = fill(block("embedding.md", "app-conf").text, values)
    runner = commands(
        _twistdArgv("-n", "--pidfile=", "-y", "proxy_app.tac"), port, pythonEnv(),
        files={"proxy_app.tac": (EXAMPLES / "proxy_app.tac").read_text(), "rproxy.conf": conf},
    )
    assert request(port, path="/x").json()["uri"] == "/x"
    assert request(port, path="/version").body == b"one\n"
    (runner.prefix / "rproxy.conf").write_text(conf.replace('"one\\n"', '"two\\n"'))
    os.kill(runner.process.pid, signal.SIGHUP)
    pollUntil(lambda: request(port, path="/version").body == b"two\n", "the reload")


def testEmbeddingProxyFactory(commands: Callable[..., CommandRunner], backend: Backend) -> None:
    """embedding.md: ProxyFactory served on an endpoint given on the command line."""
    port = freePort()
    commands(
        [sys.executable, str(EXAMPLES / "proxy_on_endpoint.py"),
         f"tcp:{port}:interface=127.0.0.1", backend.address],
        port, pythonEnv(),
    )
    response = request(port, path="/hi?x=1")
    assert response.json()["uri"] == "/hi?x=1"
    assert echoHeaders(response)["x-served-via"] == "endpoint"


def testEmbeddingLocationResource(commands: Callable[..., CommandRunner], backend: Backend) -> None:
    """embedding.md: LocationResource proxies /api/ of a twisted.web site."""
    port = freePort()
    commands(
        [sys.executable, str(EXAMPLES / "web_resource.py"),
         f"tcp:{port}:interface=127.0.0.1", backend.address],
        port, pythonEnv(),
    )
    response = request(port, path="/api/hello?y=2")
    assert response.json()["uri"] == "/hello?y=2"
    assert echoHeaders(response)["x-served-via"] == "twisted.web"
    assert request(port, path="/").body == b"the site's own home page\n"


def testPluginExample(serve: Callable[..., Proxy], tmp_path: Path) -> None:
    """
    plugins.md: with docs/examples on PYTHONPATH the proxy finds the
    example plugin; each request gets its own id, the same in the response
    header, the backend's header and the access log; it is off where the
    config says so; without the plugin the config is refused.
    """
    proxy = serve("plugins.md", "request-id", extraPaths=[EXAMPLES])
    first = proxy.get("/anything")
    second = proxy.get("/anything")
    ids = [first.header("X-Request-ID"), second.header("X-Request-ID")]
    for response, requestId in zip((first, second), ids):
        assert requestId is not None and re.fullmatch(r"[0-9a-f]{32}", requestId)
        assert echoHeaders(response)["x-request-id"] == requestId
    assert ids[0] != ids[1]
    health = proxy.get("/health")
    assert (health.status, health.header("X-Request-ID")) == (200, None)
    proxy.runner.stop()
    logged = proxy.runner.accessLog.splitlines()
    assert [line.rsplit("id=", 1)[1] for line in logged[:2]] == ids

    from twisted_rproxy.config.errors import ConfigError
    from twisted_rproxy.plugins import builtinModules
    from twisted_rproxy.service import loadConfig

    (tmp_path / "logs").mkdir()
    with pytest.raises(ConfigError, match='unknown directive "x_request_id"'):
        loadConfig(text=fill(block("plugins.md", "request-id").text, COMPILE_PORTS),
                   prefix=str(tmp_path), modules=builtinModules())


def testBalancerPluginExample(serve: Callable[..., Proxy], backend: Backend,
                              tmp_path: Path) -> None:
    """
    plugins-balancer.md: with docs/examples on PYTHONPATH, x_sticky_header
    sends each X-Session value to the same one of three backends every
    time (the peer with the highest score, as the page explains), spreads
    different values over all three, takes turns without the header, and
    when a backend stops, moves only its values (the first try fails over)
    while the others keep their backend; without the plugin the config is
    refused.
    """
    extra = [Backend(name="second"), Backend(name="third")]
    try:
        for started in extra:
            started.start()
        proxy = serve("plugins-balancer.md", "sticky-header", extraPaths=[EXAMPLES],
                      moreValues={"backend2": str(extra[0].port),
                                  "backend3": str(extra[1].port)})
        byAddress = {b.address: b.name for b in [backend] + extra}
        score = exampleModule(BALANCER_PLUGIN_FILE).score
        from twisted_rproxy.upstream.cluster import Peer

        def expected(value: str, addresses: Sequence[str]) -> str:
            """The backend the page's rule gives C{value} among C{addresses}."""
            peers = [Peer("127.0.0.1", int(a.rsplit(":", 1)[1])) for a in addresses]
            best = max(peers, key=lambda peer: score(value.encode(), peer))
            return byAddress[best.name]

        def nameFor(value: Optional[str]) -> str:
            """The name of the backend answering a request with X-Session C{value}."""
            headers = None if value is None else [("X-Session", value)]
            response = proxy.get("/", headers=headers)
            assert response.status == 200, response
            return response.json()["name"]

        values = [f"session-{i}" for i in range(30)]
        first = {value: nameFor(value) for value in values}
        for value in values * 2:
            assert nameFor(value) == first[value], value
        assert first == {v: expected(v, list(byAddress)) for v in values}
        assert set(first.values()) == set(byAddress.values())
        assert sorted(nameFor(None) for _ in range(6)) == sorted(list(byAddress.values()) * 2)

        stopped = extra[1]
        stopped.stop()
        moved = [v for v in values if first[v] == stopped.name]
        assert moved
        live = [a for a in byAddress if a != stopped.address]
        tries = proxy.get("/", headers=[("X-Session", moved[0])]).header("X-Upstream")
        assert tries is not None and tries.startswith(stopped.address + ", "), tries
        for value in values:
            want = first[value] if value not in moved else expected(value, live)
            assert nameFor(value) == want, value
    finally:
        for started in extra:
            started.cleanup()

    from twisted_rproxy.config.errors import ConfigError
    from twisted_rproxy.plugins import builtinModules
    from twisted_rproxy.service import loadConfig

    (tmp_path / "logs").mkdir()
    with pytest.raises(ConfigError, match='unknown directive "x_sticky_header"'):
        loadConfig(text=fill(block("plugins-balancer.md", "sticky-header").text, COMPILE_PORTS),
                   prefix=str(tmp_path), modules=builtinModules())


def _tlsGet(port: int, serverName: Optional[str], path: str = "/") -> Tuple[str, Any]:
    """
    One HTTPS request (certificate not verified, since each run makes its
    own CA) sending C{serverName} by SNI and as Host.

    @return: the common name of the certificate served, and the response.
    """
    import ssl

    from tests.integration.certs import commonNameOf

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        with context.wrap_socket(sock, server_hostname=serverName) as conn:
            der = conn.getpeercert(binary_form=True)
            assert der is not None
            host = serverName or "localhost"
            conn.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            data = readUntilClosed(conn)
    from tests.integration.harness import parseRawResponses

    (response,) = parseRawResponses(data)
    return commonNameOf(der), response


def testTLSExample(serve: Callable[..., Proxy]) -> None:
    """
    tls.md's two HTTPS servers on one port: each row of its SNI table gets
    the certificate and the answer the table says; HSTS is on the proxied
    answers.
    """
    proxy = serve("tls.md", "https")
    for row in tableRows("tls.md", "sni"):
        names = codeSpans(row[0])
        serverName = names[0] if names else None
        certificate = codeSpans(row[1])[0]
        served, response = _tlsGet(proxy.port, serverName)
        assert served == certificate, row
        if "proxied" in row[2]:
            assert response.status == 200, row
            headers = {n.lower(): v for n, v in json.loads(response.body)["headers"]}
            assert headers["x-forwarded-proto"] == "https"
            assert response.header("Strict-Transport-Security") == "max-age=31536000"
        else:
            assert "api over" in row[2], row
            assert response.body.decode().startswith("api over TLSv1."), row


def testTLSRedirect(serve: Callable[..., Proxy]) -> None:
    """tls.md's redirect server answers as the page says."""
    proxy = serve("tls.md", "redirect")
    response = proxy.get("/a?b=c", host="example.com")
    assert response.status == 301
    assert response.header("Location") == "https://example.com/a?b=c"


def testHTTP2Example(serve: Callable[..., Proxy]) -> None:
    """
    http2.md's server: each row of its protocols table, with curl, uses
    the protocol the table says, and the backend sees the variables the
    page names.
    """
    import shutil

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    plain = freePort()
    proxy = serve("http2.md", "h2", moreValues={"plain": str(plain)})
    for row in tableRows("http2.md", "protocols"):
        command = shlex.split(codeSpans(row[0])[0])
        tls = row[1] == "TLS"
        url = f"https://example.com:{proxy.port}/x" if tls else f"http://example.com:{plain}/x"
        out = subprocess.run(
            [curl, "-sS", "-k", "--max-time", str(int(DEADLINE)), *command[1:],
             "--resolve", f"example.com:{proxy.port if tls else plain}:127.0.0.1",
             "-w", "\n%{http_version}", url],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        body, _sep, version = out.stdout.rpartition("\n")
        assert version == codeSpans(row[2])[0], row
        headers = {n.lower(): v for n, v in json.loads(body)["headers"]}
        assert headers["host"] == "example.com"
        if version == "2":
            assert headers["x-protocol"] == "HTTP/2.0"
            assert headers["x-http2"] == ("h2" if tls else "h2c")
        else:
            assert headers["x-protocol"] == "HTTP/1.1"
            assert "x-http2" not in headers


def _clientCertGet(proxy: Proxy, certificate: Optional[Tuple[Path, Path]]) -> Any:
    """
    One HTTPS request to C{proxy} presenting C{certificate} (a cert and key
    path pair) or none; the server's certificate is not verified.
    """
    import ssl

    from tests.integration.harness import parseRawResponses

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if certificate is not None:
        context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as sock:
        with context.wrap_socket(sock, server_hostname="example.com") as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            data = readUntilClosed(conn)
    (response,) = parseRawResponses(data)
    return response


def testTLSClientCertificates(serve: Callable[..., Proxy], tmp_path: Path) -> None:
    """
    tls.md's C{ssl_verify_client optional} server answers each row of its
    table: no certificate, the page's CA-signed one, another CA's.
    """
    from tests.integration.certs import CertificateAuthority

    proxy = serve("tls.md", "client-certificates")
    prefix = proxy.runner.prefix
    stranger = CertificateAuthority(tmp_path / "stranger").issue(["mallory"], client=True)
    presented = {
        "no certificate": None,
        "`certs/alice.crt`, from the CA": (prefix / "certs/alice.crt", prefix / "certs/alice.key"),
        "a certificate from another CA": stranger,
    }
    for row in tableRows("tls.md", "client-certificates"):
        response = _clientCertGet(proxy, presented[row[0]])
        status = int(bold(row[1]))
        assert response.status == status, row
        text = codeSpans(row[1])[0]
        assert text.encode() in response.body, (row, response.body)


def testUpstreamTLSExample(serve: Callable[..., Proxy]) -> None:
    """
    upstream-tls.md's verified backend: each row of its table, the
    mismatch's log line included.
    """
    proxy = serve("upstream-tls.md", "verified", moreValues={"backend2": str(freePort())})
    for row in tableRows("upstream-tls.md", "verified"):
        path = codeSpans(row[0])[0]
        response = proxy.get(path)
        assert response.status == int(bold(row[1])), (row, response)
        spans = codeSpans(row[1])
        if response.status == 200:
            assert response.body.decode() == spans[0] + "\n", row
        else:
            assert spans[0] in proxy.runner.errorLog, row


def testTLSErrorPages(serve: Callable[..., Proxy], tmp_path: Path) -> None:
    """
    tls.md's C{error_page 497} and C{496} server answers each row of its
    table: plain HTTP on the TLS port, and TLS with no, the CA's and
    another CA's client certificate.
    """
    from tests.integration.certs import CertificateAuthority
    from tests.integration.harness import parseRawResponses, rawExchange

    proxy = serve("tls.md", "tls-errors")
    prefix = proxy.runner.prefix
    stranger = CertificateAuthority(tmp_path / "stranger").issue(["mallory"], client=True)
    presented = {
        "TLS, no certificate": None,
        "TLS, `certs/alice.crt` from the CA": (prefix / "certs/alice.crt",
                                               prefix / "certs/alice.key"),
        "TLS, a certificate from another CA": stranger,
    }
    rows = tableRows("tls.md", "tls-errors")
    assert [row[0] for row in rows] == ["plain HTTP"] + list(presented)
    for row in rows:
        status = int(bold(row[1]))
        text = codeSpans(row[1])[0].replace("{port}", str(proxy.port))
        if row[0] == "plain HTTP":
            data = rawExchange(proxy.port, b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n",
                               timeout=DEADLINE)
            (response,) = parseRawResponses(data)
            name, _sep, value = text.partition(": ")
            assert (response.status, response.header(name)) == (status, value), row
            continue
        response = _clientCertGet(proxy, presented[row[0]])
        assert response.status == status, row
        assert text.encode() in response.body, (row, response.body)
