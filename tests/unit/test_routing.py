# -*- test-case-name: tests.unit.test_routing -*-
"""
Tests for L{twisted_rproxy.http.routing}: server and location selection and
URI/Host normalisation must agree with nginx exactly, because configs are
written against nginx's behaviour.  Expectations marked "nginx 1.22" were
checked against a real nginx.
"""

from __future__ import annotations

import socket
import sys
from typing import Optional, Sequence, Tuple

import pytest

from twisted_rproxy.config.ast import Directive
from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.http.routing import (
    LocationMatch,
    LocationSpec,
    LocationTree,
    PcreError,
    ServerNameTable,
    compilePcre,
    normalizeHost,
    normalizePath,
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

_line = [0]


def loc(modifier: str, pattern: str, *children: LocationSpec, name: Optional[str] = None,
        located: bool = True) -> LocationSpec:
    """
    Build a spec whose payload is C{name} (default: modifier+pattern) and
    whose source is a fresh line of C{test.conf}, so errors can be located.
    """
    _line[0] += 1
    source = Directive("location", (modifier, pattern), (), "test.conf", _line[0]) if located else None
    payload = name if name is not None else f"{modifier}{pattern}"
    return LocationSpec(modifier, pattern, tuple(children), payload, source)


def chosen(tree: LocationTree, path: str) -> Optional[object]:
    """
    The payload selected for C{path}, or C{None}.
    """
    match = tree.match(path)
    return None if match is None else match.payload


def lineOf(spec: LocationSpec) -> int:
    """
    The config line a spec was given, to check where errors point.
    """
    assert spec.source is not None
    return spec.source.line


# ---------------------------------------------------------------------------
# location selection
# ---------------------------------------------------------------------------

DOCS_EXAMPLE = [
    loc("=", "/", name="A"),
    loc("", "/", name="B"),
    loc("", "/documents/", name="C"),
    loc("^~", "/images/", name="D"),
    loc("~*", r"\.(gif|jpg|jpeg)$", name="E"),
]


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/", "A"),
        ("/index.html", "B"),
        ("/documents/document.html", "C"),
        ("/images/1.gif", "D"),
        ("/documents/1.jpg", "E"),
        ("/documents/1.JPG", "E"),
    ],
)
def test_docsExample(path: str, expected: str) -> None:
    """
    The example of nginx's C{location} documentation selects A..E.
    """
    assert chosen(LocationTree(DOCS_EXAMPLE), path) == expected


def test_longestPrefixWhateverTheOrder() -> None:
    """
    Prefix locations are chosen by length, not by config order.
    """
    for specs in (
        [loc("", "/a"), loc("", "/a/b"), loc("", "/a/b/c")],
        [loc("", "/a/b/c"), loc("", "/a"), loc("", "/a/b")],
    ):
        tree = LocationTree(specs)
        assert chosen(tree, "/a/b/c/d") == "/a/b/c"
        assert chosen(tree, "/a/b/x") == "/a/b"
        assert chosen(tree, "/a/bc") == "/a/b"
        assert chosen(tree, "/ax") == "/a"
        assert chosen(tree, "/b") is None


def test_noMatchIsNone() -> None:
    """
    Without a matching location the server level applies: C{None}.
    """
    assert LocationTree([]).match("/") is None
    assert chosen(LocationTree([loc("", "/a"), loc("~", "x$")]), "/b") is None


def test_exactAndPrefixWithTheSameName() -> None:
    """
    C{= /a} and C{/a} coexist: the exact one for C{/a}, the prefix beyond.
    """
    tree = LocationTree([loc("", "/a"), loc("=", "/a")])
    assert chosen(tree, "/a") == "=/a"
    assert chosen(tree, "/a/b") == "/a"


def test_exactStopsTheSearch() -> None:
    """
    An exact match is used at once: no regex is tried.
    """
    tree = LocationTree([loc("=", "/e"), loc("", "/e"), loc("~", "^/e")])
    assert chosen(tree, "/e") == "=/e"
    assert chosen(tree, "/e/1") == "~^/e"


def test_prefixEqualToThePathStillChecksRegexes() -> None:
    """
    A prefix location equal to the whole path is only the longest prefix:
    regexes still win (nginx 1.22).
    """
    tree = LocationTree([loc("", "/x"), loc("~", "^/x$")])
    assert chosen(tree, "/x") == "~^/x$"


def test_regexesInConfigOrder() -> None:
    """
    The first matching regex in config order wins, not the longest.
    """
    tree = LocationTree([loc("~", "a"), loc("~", "abc"), loc("", "/")])
    assert chosen(tree, "/abc") == "~a"
    tree = LocationTree([loc("~", "abc"), loc("~", "a")])
    assert chosen(tree, "/abc") == "~abc"


def test_caretTildeStopsRegexesOfItsLevel() -> None:
    """
    C{^~} as longest prefix skips the regexes of its own level only; its
    nested regexes are still tried, and a nested C{^~} does not stop the
    outer level's regexes (nginx 1.22).
    """
    tree = LocationTree(
        [
            loc("^~", "/a/", loc("~", r"\.x$", name="nested-regex"), name="caret-a"),
            loc("", "/b/", loc("^~", "/b/c/", name="caret-bc"), loc("~", r"\.x$", name="b-regex"), name="b"),
            loc("~", r"\.x$", name="top-regex"),
        ]
    )
    assert chosen(tree, "/a/f.x") == "nested-regex"
    assert chosen(tree, "/a/f.y") == "caret-a"
    assert chosen(tree, "/b/c/f.x") == "top-regex"
    assert chosen(tree, "/b/c/f.y") == "caret-bc"
    assert chosen(tree, "/b/d/f.x") == "b-regex"


def test_nestedLocations() -> None:
    """
    The longest prefix's nested locations are searched recursively, their
    regexes before the outer ones (innermost level first).
    """
    tree = LocationTree(
        [
            loc(
                "",
                "/a/",
                loc("", "/a/b/", loc("~", r"\.x$", name="R3"), name="P2"),
                loc("~", r"\.x$", name="R2"),
                name="P1",
            ),
            loc("~", r"\.x$", name="R1"),
        ]
    )
    assert chosen(tree, "/a/b/f.x") == "R3"
    assert chosen(tree, "/a/c/f.x") == "R2"
    assert chosen(tree, "/z/f.x") == "R1"
    assert chosen(tree, "/a/b/f.y") == "P2"
    assert chosen(tree, "/a/c") == "P1"


def test_nestedInRegex() -> None:
    """
    After a regex matches, its nested regexes are searched; nested static
    locations of a regex location are never consulted (nginx builds no
    static tree for them, checked with nginx 1.22).
    """
    tree = LocationTree(
        [
            loc(
                "~",
                "/a",
                loc("", "/a/b", name="static-inside"),
                loc("=", "/ax", name="exact-inside"),
                loc("~", "/c$", name="regex-inside"),
                name="regex-a",
            )
        ]
    )
    assert chosen(tree, "/a/b/x") == "regex-a"
    assert chosen(tree, "/ax") == "regex-a"
    assert chosen(tree, "/a/c") == "regex-inside"


def test_manyPrefixes() -> None:
    """
    The compiled tree finds the longest prefix among many names, including
    names that extend each other and names differing around C{/}.
    """
    names = [f"/p{i}" for i in range(200)] + [f"/p{i}/q" for i in range(0, 200, 7)]
    names += ["/a-b", "/a.b", "/a/", "/a", "/a/b-c", "/a/b/"]
    tree = LocationTree([loc("", n) for n in names])
    for n in names:
        assert chosen(tree, n) == n
    assert chosen(tree, "/p7/q/r") == "/p7/q"
    assert chosen(tree, "/p8/q/r") == "/p8"
    assert chosen(tree, "/p150x") == "/p150"
    assert chosen(tree, "/a/b-cd") == "/a/b-c"
    assert chosen(tree, "/a/b/c") == "/a/b/"
    assert chosen(tree, "/a/bc") == "/a/"
    assert chosen(tree, "/a-bc") == "/a-b"
    assert chosen(tree, "/ab") == "/a"
    assert chosen(tree, "/") is None


def test_emptyPrefixMatchesEverything() -> None:
    """
    C{location ""} is a prefix of every path.
    """
    tree = LocationTree([loc("", "", name="all"), loc("", "/a")])
    assert chosen(tree, "/b") == "all"
    assert chosen(tree, "/a/b") == "/a"


def test_captures() -> None:
    """
    A regex location reports C{$1..} and named captures; a group that did
    not participate is C{""}; non-regex matches report none.
    """
    tree = LocationTree(
        [
            loc("~", r"^/u/(?<user>[^/]+)/(\d+)(/edit)?$", name="user"),
            loc("~*", r"^/I/(?P<img>\w+)\.PNG$", name="img"),
            loc("", "/", name="root"),
        ]
    )
    assert tree.match("/u/alice/42") == LocationMatch("user", ("alice", "42", ""), {"user": "alice"})
    assert tree.match("/u/bob/7/edit") == LocationMatch("user", ("bob", "7", "/edit"), {"user": "bob"})
    assert tree.match("/i/Cat.png") == LocationMatch("img", ("Cat",), {"img": "Cat"})
    assert tree.match("/other") == LocationMatch("root", (), {})


def test_nestedRegexCaptures() -> None:
    """
    The captures are those of the last regex that matched.
    """
    tree = LocationTree([loc("~", "^/(img)/", loc("~", r"(\w+)\.png$", name="png"), name="img")])
    assert tree.match("/img/a.png") == LocationMatch("png", ("a",), {})
    assert tree.match("/img/a.gif") == LocationMatch("img", ("img",), {})


def test_regexMatchesBytes() -> None:
    """
    Like nginx (PCRE without UTF), a regex sees the path's UTF-8 bytes:
    C{.} is one byte; captures come back losslessly.
    """
    tree = LocationTree([loc("~", "^/.$", name="one"), loc("~", "^/(.)(.)$", name="two")])
    assert chosen(tree, "/a") == "one"
    match = tree.match("/é")
    assert match is not None and match.payload == "two"
    assert "".join(match.captures).encode("utf-8", "surrogateescape") == "é".encode()


def test_caselessOnlyFoldsAscii() -> None:
    """
    C{~*} folds ASCII letters only, as PCRE's default tables do.
    """
    tree = LocationTree([loc("~*", "^/abc$", name="abc"), loc("~*", "^/é$", name="e")])
    assert chosen(tree, "/ABC") == "abc"
    assert chosen(tree, "/é") == "e"
    assert chosen(tree, "/É") is None


def test_namedLocations() -> None:
    """
    Named locations are found by name only (with or without the C{@}), the
    first of duplicates wins, and they never match a path.
    """
    tree = LocationTree(
        [loc("@", "fetch", name="f1"), loc("", "@other", name="o"), loc("@", "@fetch", name="f2"),
         loc("", "/", name="root")]
    )
    assert tree.named("fetch") == "f1"
    assert tree.named("@fetch") == "f1"
    assert tree.named("other") == "o"
    assert tree.named("missing") is None
    assert chosen(tree, "/fetch") == "root"
    assert chosen(tree, "@fetch") is None


def test_oneArgumentForms() -> None:
    """
    An empty modifier is nginx's one-argument form: C{=/x}, C{^~/x},
    C{~re}, C{~*re} and C{@name} are parsed from the pattern.
    """
    tree = LocationTree(
        [loc("", "=/x", name="exact"), loc("", "^~/img/", name="caret"), loc("", r"~*\.GIF$", name="gif"),
         loc("", r"~\.css$", name="css"), loc("", "@n", name="named"), loc("", "/", name="root")]
    )
    assert chosen(tree, "/x") == "exact"
    assert chosen(tree, "/img/a.gif") == "caret"
    assert chosen(tree, "/a.gif") == "gif"
    assert chosen(tree, "/a.css") == "css"
    assert chosen(tree, "/a.CSS") == "root"
    assert tree.named("n") == "named"


# ---------------------------------------------------------------------------
# auto_redirect
# ---------------------------------------------------------------------------


def proxied(payload: object) -> bool:
    """
    A redirect predicate: payloads named "proxy..." stand for proxy_pass.
    """
    return str(payload).startswith("proxy")


def test_redirectCandidate() -> None:
    """
    A prefix location C{/p/} is the candidate for C{/p}; with a predicate
    only handlers that ask for it count.
    """
    tree = LocationTree([loc("", "/p/", name="proxy-p"), loc("", "/s/", name="static-s"), loc("", "/")])
    assert tree.redirectCandidate("/p") == "proxy-p"
    assert tree.redirectCandidate("/p", proxied) == "proxy-p"
    assert tree.redirectCandidate("/s") == "static-s"
    assert tree.redirectCandidate("/s", proxied) is None
    assert tree.redirectCandidate("/p/") is None
    assert tree.redirectCandidate("/q") is None
    assert chosen(tree, "/p") == "/"


def test_findAgreesWithTwoSearches() -> None:
    """
    L{LocationTree.find} gives what L{LocationTree.redirectCandidate} and
    then L{LocationTree.match} give, over trees with redirect candidates
    (plain, nested, beside exact, prefix and regex locations) and many
    generated paths.
    """
    import itertools

    trees = [
        LocationTree([loc("", "/p/", name="proxy-p"), loc("", "/s/", name="static-s"), loc("", "/")]),
        LocationTree([loc("", "/p/", name="proxy-p"), loc("=", "/p", name="exact")]),
        LocationTree([loc("", "/q", loc("", "/q/", name="proxy-q"), name="q")]),
        LocationTree([loc("", "/a", name="proxy-a"), loc("", "/a/", name="proxy-a/"),
                      loc("", "/a/b/", name="static-ab"), loc("~", "b$", name="proxy-re"),
                      loc("^~", "/c/", name="proxy-c"), loc("", "/", name="root")]),
        LocationTree(DOCS_EXAMPLE),
    ]
    parts = ["", "/", "a", "p", "q", "s", "b", "c", "x", "documents", "images", "1.gif"]
    for tree in trees:
        for combo in itertools.product(parts, repeat=3):
            path = "/" + "/".join(combo).lstrip("/")
            for path in (path, path.rstrip("/") or "/"):
                redirect = tree.redirectCandidate(path, proxied)
                match = tree.match(path)
                found = tree.find(path, proxied)
                if redirect is not None:
                    assert found == (redirect, None), path
                else:
                    assert found[0] is None, path
                    assert (found[1] is None) == (match is None), path
                    if match is not None:
                        assert found[1] is not None
                        assert (found[1].payload, found[1].captures, found[1].named) == (
                            match.payload, match.captures, match.named), path


def test_redirectCandidateLosesToExact() -> None:
    """
    An exact location for the path itself is served instead.
    """
    tree = LocationTree([loc("", "/p/", name="proxy-p"), loc("=", "/p", name="exact")])
    assert tree.redirectCandidate("/p") is None
    assert chosen(tree, "/p") == "exact"


def test_redirectCandidateNested() -> None:
    """
    The candidate may be nested in the longest prefix, even one equal to
    the path (nginx 1.22 redirects C{/q} to C{/q/} here).
    """
    tree = LocationTree([loc("", "/q", loc("", "/q/", name="proxy-q"), name="q")])
    assert tree.redirectCandidate("/q", proxied) == "proxy-q"
    assert tree.redirectCandidate("/q/x", proxied) is None
    assert chosen(tree, "/q") == "q"


def test_redirectCandidateBesideSimilarNames() -> None:
    """
    Names around C{/} in sort order (C{-}, C{.}) do not hide the candidate:
    nginx's tree sorts C{/} lowest (nginx 1.22).
    """
    tree = LocationTree([loc("", "/a-b"), loc("", "/a.b"), loc("", "/a/", name="proxy-a")])
    assert tree.redirectCandidate("/a", proxied) == "proxy-a"


def test_redirectCandidateFromExactAndPrefix() -> None:
    """
    When C{= /p/} and C{/p/} both exist, the exact one is returned; the
    predicate is satisfied by either (nginx's node flag).
    """
    tree = LocationTree([loc("=", "/p/", name="exact-p"), loc("", "/p/", name="proxy-p")])
    assert tree.redirectCandidate("/p", proxied) == "exact-p"


def test_noRedirectBelowRegex() -> None:
    """
    Static locations below a regex location are never consulted, so they
    never redirect (nginx 1.22 serves C{/r} from the regex location).
    """
    tree = LocationTree([loc("~", "/r", loc("", "/r/", name="proxy-r"), name="regex-r")])
    assert tree.redirectCandidate("/r", proxied) is None
    assert chosen(tree, "/r") == "regex-r"


# ---------------------------------------------------------------------------
# location errors
# ---------------------------------------------------------------------------


def raises(specs: Sequence[LocationSpec]) -> ConfigError:
    """
    Compile C{specs}, expecting a L{ConfigError}.
    """
    with pytest.raises(ConfigError) as info:
        LocationTree(specs)
    return info.value


def test_duplicatePrefix() -> None:
    """
    C{/a} and C{^~ /a} are the same prefix: a duplicate, located at the
    second one.
    """
    second = loc("^~", "/a")
    error = raises([loc("", "/a"), second])
    assert error.message == 'duplicate location "/a"'
    assert (error.filename, error.line) == ("test.conf", lineOf(second))
    assert str(error) == f'duplicate location "/a" in test.conf:{lineOf(second)}'


def test_duplicateExact() -> None:
    """
    Two C{= /a} are duplicates too.
    """
    second = loc("=", "/a")
    error = raises([loc("=", "/a"), loc("", "/a"), second])
    assert error.message == 'duplicate location "/a"'
    assert error.line == lineOf(second)


def test_duplicateNested() -> None:
    """
    Duplicates are found in nested levels as well, before the outer ones.
    """
    inner = loc("", "/a/x")
    error = raises([loc("", "/a", loc("", "/a/x"), inner), loc("", "/b"), loc("", "/b")])
    assert error.line == lineOf(inner)


def test_allowedRepetitions() -> None:
    """
    Repeated regexes and named locations are not errors in nginx; neither
    are repeated static locations below a regex location.
    """
    LocationTree([loc("~", "x"), loc("~", "x"), loc("@", "n"), loc("@", "n"),
                  loc("~", "/z", loc("", "/z/x"), loc("", "/z/x"))])


def test_withoutSource() -> None:
    """
    Without a source the error is not located.
    """
    error = raises([loc("", "/a", located=False), loc("", "/a", located=False)])
    assert (error.filename, error.line) == (None, None)
    assert str(error) == 'duplicate location "/a"'


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: [loc("", "/a", loc("", "/b"))], 'location "/b" is outside location "/a"'),
        (lambda: [loc("", "/abc", loc("", "/ab"))], 'location "/ab" is outside location "/abc"'),
        (lambda: [loc("^~", "/a", loc("=", "/b"))], 'location "/b" is outside location "/a"'),
        (lambda: [loc("~", "^/a", loc("", "/a/b"))], 'location "/a/b" is outside location "^/a"'),
        (lambda: [loc("=", "/a", loc("", "/a/b"))],
         'location "/a/b" cannot be inside the exact location "/a"'),
        (lambda: [loc("=", "/a", loc("~", "x"))], 'location "x" cannot be inside the exact location "/a"'),
        (lambda: [loc("@", "a", loc("", "/a/b"))],
         'location "/a/b" cannot be inside the named location "@a"'),
        (lambda: [loc("", "/a", loc("@", "b"))], 'named location "@b" can be on the server level only'),
        (lambda: [loc("~", "(x")], 'invalid regex "(x": missing ), unterminated subpattern at position 0'),
        (lambda: [loc("!", "/x")], 'invalid location modifier "!"'),
    ],
)
def test_locationErrors(build, message: str) -> None:  # type: ignore[no-untyped-def]
    """
    Each nginx location error is reported with nginx's wording, located at
    the offending (innermost) location.
    """
    specs = build()
    error = raises(specs)
    assert error.message == message
    innermost = specs[-1]
    while innermost.children:
        innermost = innermost.children[-1]
    assert error.line == lineOf(innermost)


def test_nestingAllowed() -> None:
    """
    A nested location may repeat its parent's name; a regex may nest
    anywhere but in exact and named locations; a static one in a regex
    location only has to start with the regex text.
    """
    LocationTree([loc("", "/a", loc("", "/a"), loc("~", "zz")), loc("~", "/a", loc("", "/a/b"))])


def test_parseErrorsBeforeDuplicates() -> None:
    """
    nginx reports errors found while parsing (nesting, regexes) before the
    duplicates it finds while building its trees.
    """
    bad = loc("", "/c")
    error = raises([loc("", "/a"), loc("", "/a"), loc("", "/b", bad)])
    assert error.line == lineOf(bad)


# ---------------------------------------------------------------------------
# PCRE translation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, subject, expected",
    [
        (r"^/(?<n>\w+)$", "/abc", ("abc",)),
        (r"^/(?'n'\w+)-\k<n>$", "/ab-ab", ("ab",)),
        (r"^/(?'n'\w+)-\k{n}$", "/ab-ac", None),
        (r"^/(?P<n>\w+)-(?P=n)$", "/x-x", ("x",)),
        (r"^/a(?i)b", "/aB", ()),
        (r"^/a(?i)b", "/Ab", None),
        (r"^/a(?i)b(?-i)c", "/aBc", ()),
        (r"^/a(?i)b(?-i)c", "/aBC", None),
        (r"^/(?i)a|^/b", "/B", ()),
        (r"^/((?i)a|b)c", "/Bc", ("B",)),
        (r"^/((?i)a|b)c", "/bC", None),
        (r"^/(?i)a|^/b", "/A", ()),
        (r"(?i:A)b$", "/ab", ()),
        (r"/x\z", "/x\n", None),
        (r"/x\Z", "/x\n", ()),
        (r"/x$", "/x\n", ()),
        (r"^/[[:alpha:]]+$", "/azAZ", ()),
        (r"^/[[:digit:][:upper:]]+$", "/AZ09", ()),
        (r"^/\Qa.b\E$", "/a.b", ()),
        (r"^/\Qa.b\E$", "/axb", None),
        (r"^/\x{41}\x42\101", "/ABA", ()),
        (r"^/(\w)\1$", "/aa", ("a",)),
        (r"^/[\]a]+$", "/]a", ()),
        (r"^/a\hb", "/a\tb", ()),
        (r"^/(?#comment)a", "/a", ()),
        (r"^/(a)?(?(1)b|c)$", "/c", ("",)),
        (r"^/[a&&b]$", "/&", ()),
        (r"^/é+$", "/éé", None),
        (r"(*UTF)^/.$", "/é", ()),
        (r"^/..$", "/é", ()),
        (r"\bb\b", "/a b", ()),
    ],
)
def test_pcreTranslation(pattern: str, subject: str, expected: Optional[Tuple[str, ...]]) -> None:
    """
    PCRE syntax Python spells differently keeps PCRE's meaning (checked
    against nginx 1.22's PCRE2).
    """
    match = compilePcre(pattern).search(subject)
    if expected is None:
        assert match is None
    else:
        assert match is not None
        assert match.captures == expected


@pytest.mark.parametrize(
    "pattern, subject, expected",
    [
        (r"^/a++b", "/aab", True),
        (r"^/a*+ab", "/aab", False),
        (r"^/(?>a+)b", "/aab", True),
        (r"^/(?>a+)ab", "/aab", False),
    ],
)
def test_pcrePossessiveAndAtomic(pattern: str, subject: str, expected: bool) -> None:
    """
    Possessive quantifiers and atomic groups keep PCRE's meaning (never
    giving back what they matched) where Python's C{re} has them, from
    3.11; before that they are refused, naming the reason.
    """
    if sys.version_info < (3, 11):
        with pytest.raises(PcreError, match="need Python 3.11"):
            compilePcre(pattern)
    else:
        assert (compilePcre(pattern).search(subject) is not None) is expected


@pytest.mark.parametrize(
    "pattern", [r"a\Kb", r"(?|a)", r"(?R)", r"\p{L}", r"[[:^alpha:]]", r"(*CR)a", r"(?U)a", r"\x{100}", "(x", "a)"]
)
def test_pcreUnsupported(pattern: str) -> None:
    """
    Invalid patterns and PCRE features without a faithful C{re} spelling
    are refused rather than silently changing meaning.
    """
    with pytest.raises(PcreError):
        compilePcre(pattern)


# ---------------------------------------------------------------------------
# server names
# ---------------------------------------------------------------------------


def source(line: int) -> Directive:
    """
    A C{server_name} directive at C{line}, to locate messages.
    """
    return Directive("server_name", (), None, "names.conf", line)


def table(*names: str, default: object = "default") -> ServerNameTable:
    """
    A table where each name's payload is the name itself.
    """
    return ServerNameTable([(n, n, source(i + 1)) for i, n in enumerate(names)], default)


def test_serverNameOrder() -> None:
    """
    Exact beats leading wildcard beats trailing wildcard beats regex beats
    the default server.
    """
    names = table("~^www\\.", "www.example.*", "*.example.com", "www.example.com")
    assert names.match("www.example.com") == ("www.example.com", {})
    assert names.match("www.example.org") == ("www.example.*", {})
    assert names.match("w.example.com") == ("*.example.com", {})
    assert names.match("www.other.net") == ("~^www\\.", {})
    assert names.match("other.net") == ("default", {})
    assert table("~^www\\.", "*.com").match("www.x.com")[0] == "*.com"
    assert table("~^www\\.", "www.*").match("www.x.com")[0] == "www.*"


def test_longestWildcard() -> None:
    """
    The most specific wildcard wins, whatever the config order.
    """
    names = table("*.com", "*.example.com", "*.b.example.com", "www.*", "www.example.*")
    assert names.match("x.b.example.com")[0] == "*.b.example.com"
    assert names.match("b.example.com")[0] == "*.example.com"
    assert names.match("x.a.example.com")[0] == "*.example.com"
    assert names.match("example.com")[0] == "*.com"
    assert names.match("www.example")[0] == "www.*"
    assert names.match("www.org")[0] == "www.*"
    assert table("www.*", "www.example.*").match("www.example.co.uk")[0] == "www.example.*"


def test_dotWildcard() -> None:
    """
    C{.example.com} matches C{example.com} and every subdomain;
    C{*.example.com} does not match C{example.com}.
    """
    dot = table(".example.com")
    assert dot.match("example.com")[0] == ".example.com"
    assert dot.match("a.b.example.com")[0] == ".example.com"
    assert dot.match("badexample.com")[0] == "default"
    star = table("*.example.com")
    assert star.match("example.com")[0] == "default"
    assert star.match("a.example.com")[0] == "*.example.com"


def test_trailingWildcardNeedsLabels() -> None:
    """
    C{www.example.*} only matches whole labels after C{www.example.}.
    """
    names = table("www.example.*")
    assert names.match("www.example.com")[0] == "www.example.*"
    assert names.match("www.examplex.com")[0] == "default"
    assert names.match("www.example")[0] == "default"


def test_emptyAndUnderscoreNames() -> None:
    """
    C{""} matches requests without Host; C{_} is just a name.
    """
    names = table("", "_")
    assert names.match("")[0] == ""
    assert names.match("_")[0] == "_"
    assert names.match("x")[0] == "default"
    assert table("_").match("")[0] == "default"


def test_emptyHostSkipsWildcardsAndRegexes() -> None:
    """
    Without a Host only the empty name can match.
    """
    assert table("~^$", "*.com", ".com", "com.*").match("")[0] == "default"


def test_caseInsensitive() -> None:
    """
    Names and hosts compare without case (ASCII only, as nginx).
    """
    names = table("Example.ORG", "*.Example.NET")
    assert names.match("example.org")[0] == "Example.ORG"
    assert names.match("EXAMPLE.org")[0] == "Example.ORG"
    assert names.match("a.example.net")[0] == "*.Example.NET"


def test_regexNames() -> None:
    """
    Regex names are tried in config order with their named captures; nginx
    compiles them caseless only when they contain an uppercase letter.
    """
    names = table("~^(?<user>.+)\\.example\\.net$", "~^(?<sub>[^.]+)\\.", "~^WWW\\.")
    assert names.match("alice.example.net") == ("~^(?<user>.+)\\.example\\.net$", {"user": "alice"})
    assert names.match("bob.org") == ("~^(?<sub>[^.]+)\\.", {"sub": "bob"})
    assert table("~^WWW\\.").match("www.x")[0] == "~^WWW\\."
    assert table("~^www\\.").match("WWW.x")[0] == "~^www\\."


def test_conflictingNames() -> None:
    """
    nginx keeps the first of conflicting names and warns about the others,
    with their file:line; C{.example.com} conflicts with C{example.com}
    and C{*.example.com}.
    """
    entries = [
        ("example.com", "first", source(1)),
        ("EXAMPLE.com", "second", source(2)),
        ("*.a.com", "star", source(3)),
        (".a.com", "dot", source(4)),
        ("www.b.*", "tail1", source(5)),
        ("www.b.*", "tail2", source(6)),
        (".example.com", "dot-example", source(7)),
        ("~^x$", "regex1", source(8)),
        ("~^x$", "regex2", source(9)),
    ]
    names = ServerNameTable(entries, "default")
    assert names.match("example.com")[0] == "first"
    assert names.match("x.a.com")[0] == "star"
    assert names.match("a.com")[0] == "default"
    assert names.match("www.b.c")[0] == "tail1"
    assert names.match("x.example.com")[0] == "default"
    assert names.match("x")[0] == "regex1"
    assert names.warnings == [
        'conflicting server name "EXAMPLE.com", ignored in names.conf:2',
        'conflicting server name ".a.com", ignored in names.conf:4',
        'conflicting server name "www.b.*", ignored in names.conf:6',
        'conflicting server name ".example.com", ignored in names.conf:7',
    ]


def test_dotNameClaimsTheBareName() -> None:
    """
    Once C{.a.com} is registered a later exact C{a.com} conflicts, even
    when C{.a.com} itself lost to C{*.a.com}.
    """
    names = ServerNameTable([("*.a.com", 1, None), (".a.com", 2, None), ("a.com", 3, None)], 0)
    assert names.match("a.com")[0] == 0
    assert len(names.warnings) == 2


@pytest.mark.parametrize(
    "name, message",
    [
        ("www.*.com", 'invalid server name or wildcard "www.*.com"'),
        ("a..b", 'invalid server name or wildcard "a..b"'),
        ("a*", 'invalid server name or wildcard "a*"'),
        ("*.a.*", 'invalid server name or wildcard "*.a.*"'),
        ("*example.com", 'server name "*example.com" is invalid'),
        ("*", 'server name "*" is invalid'),
        (".", 'server name "." is invalid'),
        ("~", 'empty regex in server name "~"'),
        ("~(x", 'invalid regex "(x": missing ), unterminated subpattern at position 0'),
    ],
)
def test_serverNameErrors(name: str, message: str) -> None:
    """
    Invalid names raise nginx's errors, located at their directive.
    """
    with pytest.raises(ConfigError) as info:
        ServerNameTable([("ok.com", 1, source(1)), (name, 2, source(7))], 0)
    assert info.value.message == message
    assert (info.value.filename, info.value.line) == ("names.conf", 7)


def test_suspiciousSymbols() -> None:
    """
    A C{/} in a name is only warned about.
    """
    names = table("a/b")
    assert names.warnings == ['server name "a/b" has suspicious symbols in names.conf:1']
    assert names.match("a/b")[0] == "a/b"


def test_hostnameName() -> None:
    """
    C{$hostname} stands for this machine's name.
    """
    names = table("$hostname")
    assert names.match(socket.gethostname().lower())[0] == "$hostname"


# ---------------------------------------------------------------------------
# Host normalisation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"example.com", "example.com"),
        (b"Example.COM", "example.com"),
        (b"example.com.", "example.com"),
        (b"example.com:8080", "example.com"),
        (b"example.com.:81", "example.com"),
        (b"[::1]:80", "[::1]"),
        (b"[::1]", "[::1]"),
        (b"[::1", "[::1"),
        (b"x:y:z", "x"),
        (b".example.com", ".example.com"),
        (b"_", "_"),
        (b"a\x80b", "a\udc80b"),
        (b"", None),
        (b".", None),
        (b":80", None),
        (b"a..b", None),
        (b"..a", None),
        (b"a..", None),
        (b"a.com:8..0", None),
        (b"a/b", None),
        (b"a\\b", None),
        (b"a\x00b", None),
        (b"a b", None),
        (b"a\tb", None),
        (b"a\x7fb", None),
    ],
)
def test_normalizeHost(raw: bytes, expected: Optional[str]) -> None:
    """
    Host values are validated and normalised as C{ngx_http_validate_host}
    does (nginx 1.22 answers 400 for the C{None} cases, except the
    backslash, refused here on every platform).
    """
    assert normalizeHost(raw) == expected
    # Asked again, the remembered answer is the same.
    assert normalizeHost(raw) == expected
    assert normalizeHost(raw.decode("utf-8", "surrogateescape")) == expected


def test_normalizeHostCacheBounded() -> None:
    """
    Remembered Host values are bounded in number and length, and the
    answers stay right once the cache starts over.
    """
    from twisted_rproxy.http import routing

    for i in range(routing._HOST_CACHE_SIZE * 2 + 3):
        assert normalizeHost(b"h%d.test:80" % i) == f"h{i}.test"
        assert len(routing._HOSTS) <= routing._HOST_CACHE_SIZE
    long = b"a" * (routing._HOST_CACHE_KEY + 1)
    assert normalizeHost(long) == long.decode()
    assert long not in routing._HOSTS
    assert normalizeHost(b"a..b") is None


# ---------------------------------------------------------------------------
# path normalisation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"/", "/"),
        (b"//a///b", "/a/b"),
        (b"/a/./b/.", "/a/b/"),
        (b"/a/..", "/"),
        (b"/a/b/../..", "/"),
        (b"/./a", "/a"),
        (b"/...", "/..."),
        (b"/a/..b/c", "/a/..b/c"),
        (b"/a/.b/../c", "/a/c"),
        (b"/%2F", "/"),
        (b"/a%2Fb", "/a/b"),
        (b"/a%2f%2fb", "/a/b"),
        (b"/a%2F..%2Fb", "/b"),
        (b"/a/%2E%2E", "/"),
        (b"/a/b/..%2F", "/a/"),
        (b"/a%3Fb", "/a?b"),
        (b"/a%23b", "/a#b"),
        (b"/a%25b", "/a%b"),
        (b"/a%252Fb", "/a%2Fb"),
        (b"/a%20b", "/a b"),
        (b"/a%0Ab", "/a\nb"),
        (b"/a+b", "/a+b"),
        (b"/a%2Bb", "/a+b"),
        (b"/a\\b", "/a\\b"),
        (b"/a?b", "/a"),
        (b"/a/..?x", "/"),
        (b"/a/.#x", "/a/"),
        (b"/%C3%A9", "/é"),
        (b"/\xc3\xa9", "/é"),
        (b"/%c3", "/\udcc3"),
        (b"/\x80\xff", "/\udc80\udcff"),
        (b"/a/../../b", None),
        (b"/..", None),
        (b"/../a", None),
        (b"/%2e%2e/", None),
        (b"/.%2e/", None),
        (b"/a/b%2F%2E%2E%2F%2E%2E%2F%2E%2E", None),
        (b"/%00", None),
        (b"/a/..%00", None),
        (b"/%zz", None),
        (b"/%G0", None),
        (b"/%", None),
        (b"/%4", None),
        (b"/a%2", None),
        (b"/a\x01b", None),
        (b"/a\x7fb", None),
        (b"/a b", None),
        (b"", None),
        (b"a/b", None),
        (b"*", None),
    ],
)
def test_normalizePath(raw: bytes, expected: Optional[str]) -> None:
    """
    Paths are decoded and normalised as C{ngx_http_parse_complex_uri} with
    C{merge_slashes on} does (each case checked against nginx 1.22's
    C{$uri}).
    """
    assert normalizePath(raw) == expected


def test_normalizePathFastPathAgrees() -> None:
    """
    Paths the fast path returns as they are get the same answer from the
    full state machine, over many generated paths mixing the characters
    that matter (slashes, dots, escapes, non-ASCII, spaces).
    """
    import random

    from twisted_rproxy.http import routing

    pieces = [b"/", b"/", b"a", b"Z", b"9", b".", b"..", b"-", b"~", b"%41", b"%2F",
              b"%2e", b"@", b":", b"\xc3\xa9", b" ", b"_", b"'", b"!", b";="]
    chooser = random.Random(1234)
    fast = 0
    for _ in range(5000):
        path = b"/" + b"".join(chooser.choice(pieces) for _ in range(chooser.randrange(8)))
        if routing._PLAIN_PATH.fullmatch(path) is not None:
            fast += 1
        assert normalizePath(path) == routing._normalizeComplexPath(path), path
    assert fast > 500



def test_normalizePathRoundTrips() -> None:
    """
    The decoded path gives back nginx's C{$uri} bytes exactly.
    """
    raw = b"/caf%C3%A9/%FF%FE/\xe2\x82\xac"
    path = normalizePath(raw)
    assert path is not None
    assert path.encode("utf-8", "surrogateescape") == b"/caf\xc3\xa9/\xff\xfe/\xe2\x82\xac"


def test_findRemembersOnlyWhatThePathDecides() -> None:
    """
    L{LocationTree.find} keeps answers for recent paths: asked again, for
    more paths than it keeps, for paths too long to keep, or with another
    redirect predicate, it answers as a fresh tree does; a regex-decided
    answer carries that path's own captures.
    """
    specs = [loc("", "/p/", name="proxy-p"), loc("", "/", name="root"),
             loc("~", "^/r/(?<n>[a-z]+)$", name="regex")]
    tree = LocationTree(specs)
    paths = ["/p", "/p/x", "/", "/r/abc", "/r/de", "/" + "x" * 200] + [f"/n{i}" for i in range(300)]

    def answer(found: object) -> object:
        redirect, match = found  # type: ignore[misc]
        if match is None:
            return redirect, None
        return redirect, (match.payload, match.captures, dict(match.named))

    for predicate in (proxied, lambda payload: False, proxied):
        for _round in range(2):
            for path in paths:
                fresh = LocationTree(specs).find(path, predicate)
                assert answer(tree.find(path, predicate)) == answer(fresh), path
    assert answer(tree.find("/r/abc", proxied)) == (None, ("regex", ("abc",), {"n": "abc"}))
    assert answer(tree.find("/p", proxied)) == ("proxy-p", None)
    assert answer(tree.find("/p", lambda payload: False)) == (None, ("root", (), {}))


def test_normalizePathRemembersEachAnswer() -> None:
    """
    L{normalizePath} keeps what it answered for recent paths (refusals
    too): asked again, and after more paths than it keeps, or for a path
    too long to keep, it answers as its own state machine does.
    """
    from twisted_rproxy.http import routing

    paths = [b"/a/b", b"/a//b/../c", b"/%41", b"/..", b"x", b"/ok?q", b"/" + b"y" * 300]
    paths += [b"/n%d" % i for i in range(1100)]
    for _round in range(2):
        for path in paths:
            assert normalizePath(path) == routing._normalizePath(path), path
    assert normalizePath(b"/a//b/../c") == "/a/c"
    assert normalizePath(b"/..") is None
    assert len(routing._PATHS) <= routing._PATH_CACHE_SIZE
