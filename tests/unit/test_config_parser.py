# -*- test-case-name: tests.unit.test_config_parser -*-
"""
Tests for L{twisted_rproxy.config.parser}: configs must split into the same
directives and arguments nginx would produce, and syntax errors must carry
nginx's messages at the right file and line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple

import pytest

from twisted_rproxy.config.ast import Directive
from twisted_rproxy.config.errors import ConfigError
from twisted_rproxy.config.parser import parseFile, parseString


def _args(text: str) -> Tuple[str, ...]:
    """
    Parse C{text}, which must hold exactly one directive, for its arguments.
    """
    (directive,) = parseString(text)
    return directive.args


def _error(text: str, filename: str = "<string>", **kwargs: str) -> ConfigError:
    """
    Parse C{text}, which must be rejected, and return the error.
    """
    with pytest.raises(ConfigError) as info:
        parseString(text, filename, **kwargs)
    return info.value


def _write(path: Path, text: str) -> Path:
    """
    Create C{path} (and its parents) holding C{text}.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# Structure


def test_simpleDirective() -> None:
    """
    A simple directive becomes a name, its arguments and no block.
    """
    assert parseString("worker_processes  4;") == (
        Directive("worker_processes", ("4",), None, "<string>", 1),
    )


def test_noArguments() -> None:
    """
    A directive may have no arguments at all.
    """
    assert parseString("ip_hash;") == (Directive("ip_hash", (), None, "<string>", 1),)


def test_empty() -> None:
    """
    Empty text, or only blanks and comments, is an empty config.
    """
    assert parseString("") == ()
    assert parseString("  \n\t\r\n# nothing here\n") == ()


def test_block() -> None:
    """
    A directive followed by C{{...}} has its children as its block.
    """
    (events,) = parseString("events { worker_connections 768; use epoll; }")
    assert events.name == "events"
    assert events.args == ()
    assert [(d.name, d.args, d.block) for d in events.block or ()] == [
        ("worker_connections", ("768",), None),
        ("use", ("epoll",), None),
    ]


def test_emptyBlock() -> None:
    """
    An empty block is an empty tuple, distinct from no block at all.
    """
    (events,) = parseString("events {}")
    assert events.block == ()


def test_blockWithArguments() -> None:
    """
    Block directives keep the arguments before C{{}.
    """
    (location,) = parseString("location ~* \\.(gif|jpg)$ { }")
    assert location.args == ("~*", "\\.(gif|jpg)$")
    assert location.block == ()


def test_nesting() -> None:
    """
    Blocks nest to any depth and siblings follow a closed block.
    """
    config = parseString(
        """
        http {
            server {
                location / {
                    if ($x) { return 404; }
                }
                listen 80;
            }
            server { }
        }
        stream { }
        """
    )
    assert [d.name for d in config] == ["http", "stream"]
    http = config[0].block or ()
    assert [d.name for d in http] == ["server", "server"]
    server = http[0].block or ()
    assert [d.name for d in server] == ["location", "listen"]
    (ifBlock,) = server[0].block or ()
    assert ifBlock.args == ("($x)",)
    assert ifBlock.block == (Directive("return", ("404",), None, "<string>", 5),)


def test_noSpaceAroundPunctuation() -> None:
    """
    C{;}, C{{} and C{}} need no blanks around them.
    """
    (http,) = parseString("http{server{listen 80;}}")
    (server,) = http.block or ()
    assert server.block == (Directive("listen", ("80",), None, "<string>", 1),)


def test_closingBraceInsideToken() -> None:
    """
    Like nginx, C{}} only closes a block where an argument could start; in
    the middle of an unquoted argument it is part of it.
    """
    assert _args("return 200 a}b;") == ("200", "a}b")


def test_blanks() -> None:
    """
    Spaces, tabs, CR and LF all separate arguments.
    """
    assert _args("a\tb \r\n c\n\n\td ;") == ("b", "c", "d")


# Quoting and escapes


def test_doubleQuoted() -> None:
    """
    A double-quoted argument keeps blanks, C{;}, C{{}, C{}} and C{#}.
    """
    assert _args('add_header X "a b; {c} # d";') == ("X", "a b; {c} # d")


def test_singleQuoted() -> None:
    """
    Single quotes work the same way and may contain double quotes.
    """
    assert _args("log_format main '$remote_addr \"$request\"';") == (
        "main",
        '$remote_addr "$request"',
    )


def test_emptyQuoted() -> None:
    """
    C{""} and C{''} are empty arguments, as C{map} uses for the empty key.
    """
    (mapDirective,) = parseString('map $a $b { "" 0; \'\' 1; default "";}')
    assert [(d.name, d.args) for d in mapDirective.block or ()] == [
        ("", ("0",)),
        ("", ("1",)),
        ("default", ("",)),
    ]


def test_quotedName() -> None:
    """
    The directive name may itself be quoted.
    """
    (directive,) = parseString('"server_name" example.com;')
    assert directive.name == "server_name"


def test_quoteThenPunctuation() -> None:
    """
    A closing quote may be followed directly by C{;} or C{{}.
    """
    (location,) = parseString('location "/a b"{ return 200 "ok";}')
    assert location.args == ("/a b",)
    assert location.block == (Directive("return", ("200", "ok"), None, "<string>", 1),)


def test_quoteInsideUnquoted() -> None:
    """
    A quote in the middle of an unquoted argument is an ordinary character.
    """
    assert _args('a b"c d;') == ('b"c', "d")


def test_escapedQuotes() -> None:
    """
    Backslash-escaped quotes and backslashes lose their backslash.
    """
    assert _args(r'a "x\"y" ' + r"'p\'q' " + r'"back\\slash";') == (
        'x"y',
        "p'q",
        "back\\slash",
    )


def test_escapedControlCharacters() -> None:
    """
    C{\\n}, C{\\r} and C{\\t} become control characters in quoted strings.
    """
    assert _args(r'return 200 "a\nb\rc\td";') == ("200", "a\nb\rc\td")


def test_escapesInUnquoted() -> None:
    """
    nginx resolves the same escapes in unquoted arguments too, and the
    backslash keeps C{;} or a blank from ending the argument.
    """
    assert _args(r"a b\tc d\;e f\ g;") == ("b\tc", "d\\;e", "f\\ g")


def test_otherEscapesKept() -> None:
    """
    Any other backslash sequence, as in a regex, is kept verbatim.
    """
    assert _args(r'location ~ "^/a\d+\.php$";') == ("~", r"^/a\d+\.php$")
    assert _args(r"rewrite ^/(\w+)\.html$ /$1;") == (r"^/(\w+)\.html$", "/$1")


def test_quotedMultiline() -> None:
    """
    A quoted argument may span lines; the newlines are kept.
    """
    (fmt, after) = parseString("log_format main 'a\n  b';\nafter;")
    assert fmt.args == ("main", "a\n  b")
    assert after.line == 3


# Comments


def test_comments() -> None:
    """
    C{#} at the start of an argument comments out the rest of the line.
    """
    config = parseString("# header\nuser www-data; # trailing ; {\n#last")
    assert config == (Directive("user", ("www-data",), None, "<string>", 2),)


def test_commentInsideDirective() -> None:
    """
    A comment may sit between the arguments of one directive.
    """
    assert _args("listen # the port follows\n 80;") == ("80",)


def test_hashInsideQuotes() -> None:
    """
    C{#} inside quotes is not a comment.
    """
    assert _args('return 200 "#not a comment";') == ("200", "#not a comment")


def test_hashInsideToken() -> None:
    """
    C{#} in the middle of an unquoted argument is not a comment either.
    """
    assert _args("return 301 /page#anchor;") == ("301", "/page#anchor")


# Variables


def test_bracedVariable() -> None:
    """
    A C{{} directly after C{$} belongs to the argument, so C{${var}} can be
    used to glue a variable to following text.
    """
    assert _args("set $x ${host}suffix;") == ("$x", "${host}suffix")
    assert _args("return 200 a${b}c${d};") == ("200", "a${b}c${d}")


def test_braceAfterVariableNameOpensBlock() -> None:
    """
    A C{{} that does not directly follow C{$} still opens a block.
    """
    (ifBlock,) = parseString("if $x{ return 403; }")
    assert ifBlock.args == ("$x",)
    assert ifBlock.block == (Directive("return", ("403",), None, "<string>", 1),)


# Locations


def test_lineNumbers() -> None:
    """
    Every directive records the line of its name, counted from 1.
    """
    config = parseString(
        "a;\n\nb\n  x\n  y;\nc {\n  d;\n\n  e { }\n}\n", filename="my.conf"
    )
    assert [(d.name, d.filename, d.line) for d in config] == [
        ("a", "my.conf", 1),
        ("b", "my.conf", 3),
        ("c", "my.conf", 6),
    ]
    assert [(d.name, d.filename, d.line) for d in config[2].block or ()] == [
        ("d", "my.conf", 7),
        ("e", "my.conf", 9),
    ]


def test_lineAfterEscapedNewline() -> None:
    """
    A newline made ordinary by a backslash still counts as a line.
    """
    config = parseString("a b\\\nc;\nd;")
    assert config[0].args == ("b\\\nc",)
    assert config[1].line == 3


def test_carriageReturnLines() -> None:
    """
    CRLF line endings count one line each.
    """
    config = parseString("a;\r\nb;\r\n")
    assert [d.line for d in config] == [1, 2]


# Syntax errors


@pytest.mark.parametrize(
    "text, message, line",
    [
        ("}", 'unexpected "}"', 1),
        ("a;\nb { }\n}\n", 'unexpected "}"', 3),
        ("a b }", 'unexpected "}"', 1),
        ("a {\n b c\n}", 'unexpected "}"', 3),
        (";", 'unexpected ";"', 1),
        ("a;\n  ;", 'unexpected ";"', 2),
        ("{ a; }", 'unexpected "{"', 1),
        ("a { { } }", 'unexpected "{"', 1),
        ("a b", 'unexpected end of file, expecting ";" or "}"', 1),
        ("a b\n", 'unexpected end of file, expecting ";" or "}"', 2),
        ("http {\n a b", 'unexpected end of file, expecting ";" or "}"', 2),
        ("a\\", 'unexpected end of file, expecting ";" or "}"', 1),
        ("http {\n  a;\n", 'unexpected end of file, expecting "}"', 3),
        ("a { b { c; }", 'unexpected end of file, expecting "}"', 1),
        ('a "b;\n', 'unexpected end of file, expecting ";" or "}"', 2),
        ("a 'b\\';", 'unexpected end of file, expecting ";" or "}"', 1),
        ('a "b"c;', 'unexpected "c"', 1),
        ("a\n'b'\"c\";", 'unexpected """', 2),
        ('a "b"#c;', 'unexpected "#"', 1),
        ('a { b "c"}', 'unexpected "}"', 1),
    ],
)
def test_syntaxErrors(text: str, message: str, line: int) -> None:
    """
    Each syntax error carries nginx's message and the line nginx reports:
    the line where the offending character, or the end of file, was met.
    """
    error = _error(text, "bad.conf")
    assert (error.message, error.filename, error.line) == (message, "bad.conf", line)
    assert str(error) == f"{message} in bad.conf:{line}"


# Includes


def test_includeRelative(tmp_path: Path) -> None:
    """
    A relative include resolves against the include base and is replaced in
    place by the included directives, which keep their own file and line.
    """
    included = _write(tmp_path / "mime.types", "\ntypes {\n  text/html html;\n}\n")
    config = parseString(
        "http {\n  a;\n  include mime.types;\n  b;\n}", "main.conf", str(tmp_path)
    )
    http = config[0].block or ()
    assert [(d.name, d.filename, d.line) for d in http] == [
        ("a", "main.conf", 2),
        ("types", str(included), 2),
        ("b", "main.conf", 4),
    ]
    assert http[1].block == (
        Directive("text/html", ("html",), None, str(included), 3),
    )


def test_includeAbsolute(tmp_path: Path) -> None:
    """
    An absolute include ignores the include base.
    """
    included = _write(tmp_path / "x.conf", "x 1;")
    config = parseString(f"include {included};", includeBase="/nonexistent")
    assert config == (Directive("x", ("1",), None, str(included), 1),)


def test_includeDefaultBaseIsWorkingDirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Without an include base, L{parseString} resolves relative includes
    against the current directory.
    """
    _write(tmp_path / "x.conf", "x;")
    monkeypatch.chdir(tmp_path)
    (directive,) = parseString("include x.conf;")
    assert directive.name == "x"


def test_includeGlob(tmp_path: Path) -> None:
    """
    A glob includes every match in sorted order.
    """
    _write(tmp_path / "conf.d" / "b.conf", "b;")
    _write(tmp_path / "conf.d" / "a.conf", "a;")
    _write(tmp_path / "conf.d" / "c.conf", "c1;\nc2;")
    _write(tmp_path / "conf.d" / "ignored.txt", "nope;")
    config = parseString("include conf.d/*.conf;", includeBase=str(tmp_path))
    assert [(d.name, os.path.basename(d.filename), d.line) for d in config] == [
        ("a", "a.conf", 1),
        ("b", "b.conf", 1),
        ("c1", "c.conf", 1),
        ("c2", "c.conf", 2),
    ]


def test_includeGlobCharacters(tmp_path: Path) -> None:
    """
    C{?} and C{[...]} are glob characters too.
    """
    for name in ("s1", "s2", "s3", "sx"):
        _write(tmp_path / name, f"{name};")
    assert [d.name for d in parseString("include s?;", includeBase=str(tmp_path))] == [
        "s1",
        "s2",
        "s3",
        "sx",
    ]
    config = parseString("include s[13];", includeBase=str(tmp_path))
    assert [d.name for d in config] == ["s1", "s3"]


def test_includeGlobNoMatches(tmp_path: Path) -> None:
    """
    A glob matching nothing includes nothing, without error.
    """
    assert parseString("a;include nothing/*.conf;b;", includeBase=str(tmp_path)) == (
        Directive("a", (), None, "<string>", 1),
        Directive("b", (), None, "<string>", 1),
    )


def test_includeBaseWithGlobCharacters(tmp_path: Path) -> None:
    """
    Glob characters in the include base are taken literally.
    """
    base = tmp_path / "odd[dir]"
    _write(base / "x.conf", "x;")
    assert [d.name for d in parseString("include *.conf;", includeBase=str(base))] == [
        "x"
    ]


def test_includeNested(tmp_path: Path) -> None:
    """
    Included files may include others; relative paths always resolve
    against the include base, as nginx resolves them against its prefix.
    """
    _write(tmp_path / "sites" / "default", "server {\n\n  include snippets/x;\n}")
    snippet = _write(tmp_path / "snippets" / "x", "# comment\n\nlisten 80;")
    config = parseString("http { include sites/*; }", includeBase=str(tmp_path))
    (server,) = config[0].block or ()
    assert server.line == 1
    assert server.block == (Directive("listen", ("80",), None, str(snippet), 3),)


def test_includeSameFileTwice(tmp_path: Path) -> None:
    """
    Including one file in several places is not recursion.
    """
    _write(tmp_path / "common", "x;")
    config = parseString(
        "a { include common; } b { include common; }", includeBase=str(tmp_path)
    )
    assert [len(d.block or ()) for d in config] == [1, 1]


def test_includeMissing(tmp_path: Path) -> None:
    """
    Including a missing file fails like nginx's open(), located at the
    include directive.
    """
    text = "a;\n\ninclude missing.conf;"
    error = _error(text, "main.conf", includeBase=str(tmp_path))
    path = os.path.join(str(tmp_path), "missing.conf")
    assert error.message == f'open() "{path}" failed (No such file or directory)'
    assert (error.filename, error.line) == ("main.conf", 3)


def test_includeMissingFromIncludedFile(tmp_path: Path) -> None:
    """
    An error about an include inside an included file names that file.
    """
    inner = _write(tmp_path / "inner.conf", "\ninclude gone.conf;\n")
    error = _error("include inner.conf;", includeBase=str(tmp_path))
    assert error.message.startswith('open() "')
    assert (error.filename, error.line) == (str(inner), 2)


@pytest.mark.parametrize("text", ["include;", "include a b;"])
def test_includeArity(text: str) -> None:
    """
    C{include} takes exactly one argument.
    """
    error = _error("\n" + text)
    assert error.message == 'invalid number of arguments in "include" directive'
    assert (error.filename, error.line) == ("<string>", 2)


def test_includeWithBlock() -> None:
    """
    C{include} cannot open a block.
    """
    error = _error("include x { }")
    assert str(error) == 'directive "include" is not terminated by ";" in <string>:1'


def test_includeRecursion(tmp_path: Path) -> None:
    """
    A file that includes itself, directly or through another, is refused
    with an error naming it, instead of recursing forever.
    """
    a = _write(tmp_path / "a.conf", "x;\ninclude b.conf;")
    b = _write(tmp_path / "b.conf", "y;\n\ninclude a.conf;")
    error = _error("include a.conf;", includeBase=str(tmp_path))
    assert error.message == f'recursive include of "{a}"'
    assert (error.filename, error.line) == (str(b), 3)


def test_includeSelfFromMainFile(tmp_path: Path) -> None:
    """
    The main file including itself is recursion too.
    """
    main = _write(tmp_path / "nginx.conf", "include nginx.conf;")
    with pytest.raises(ConfigError) as info:
        parseFile(str(main))
    assert info.value.message == f'recursive include of "{main}"'


def test_syntaxErrorInIncludedFile(tmp_path: Path) -> None:
    """
    Syntax errors in included files are located in those files.
    """
    bad = _write(tmp_path / "bad.conf", "a;\nb {\n")
    error = _error("http { include bad.conf; }", includeBase=str(tmp_path))
    assert str(error) == f'unexpected end of file, expecting "}}" in {bad}:3'


def test_includeCannotCloseOuterBlock(tmp_path: Path) -> None:
    """
    As in nginx, an included file is parsed on its own: it cannot close a
    block opened by the file that includes it.
    """
    closer = _write(tmp_path / "closer.conf", "a;\n}")
    error = _error("http { include closer.conf;", includeBase=str(tmp_path))
    assert str(error) == f'unexpected "}}" in {closer}:2'


# parseFile


def test_parseFile(tmp_path: Path) -> None:
    """
    L{parseFile} names directives after the path it was given and resolves
    relative includes against that file's directory by default.
    """
    conf = tmp_path / "etc"
    _write(conf / "mime.types", "types { }")
    main = _write(conf / "nginx.conf", "http {\n  include mime.types;\n}")
    (http,) = parseFile(str(main))
    assert (http.filename, http.line) == (str(main), 1)
    (types,) = http.block or ()
    assert (types.name, types.filename) == ("types", str(conf / "mime.types"))


def test_parseFileIncludeBase(tmp_path: Path) -> None:
    """
    An explicit include base overrides the main file's directory.
    """
    _write(tmp_path / "prefix" / "x.conf", "x;")
    main = _write(tmp_path / "elsewhere" / "nginx.conf", "include x.conf;")
    (x,) = parseFile(str(main), includeBase=str(tmp_path / "prefix"))
    assert x.name == "x"


def test_parseFileMissing(tmp_path: Path) -> None:
    """
    A missing main file is reported like nginx's open() failure, with no
    location since no config refers to it.
    """
    path = str(tmp_path / "nope.conf")
    with pytest.raises(ConfigError) as info:
        parseFile(path)
    assert str(info.value) == f'open() "{path}" failed (No such file or directory)'
    assert (info.value.filename, info.value.line) == (None, None)


def test_parseFileNonUTF8(tmp_path: Path) -> None:
    """
    Bytes that are not UTF-8 do not stop parsing, as nginx reads bytes.
    """
    main = tmp_path / "latin1.conf"
    main.write_bytes(b"add_header X caf\xe9;")
    (directive,) = parseFile(str(main))
    assert directive.args[1].encode("utf-8", "surrogateescape") == b"caf\xe9"


DEBIAN_NGINX_CONF = r"""user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
include modules-enabled/*.conf;

events {
	worker_connections 768;
	# multi_accept on;
}

http {

	##
	# Basic Settings
	##

	sendfile on;
	tcp_nopush on;
	types_hash_max_size 2048;
	# server_tokens off;

	include mime.types;
	default_type application/octet-stream;

	##
	# SSL Settings
	##

	ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3; # Dropping SSLv3, ref: POODLE
	ssl_prefer_server_ciphers on;

	access_log /var/log/nginx/access.log;
	log_format main '$remote_addr - $remote_user [$time_local] "$request" '
	                '$status $body_bytes_sent "$http_referer"';

	gzip on;

	include conf.d/*.conf;
	include sites-enabled/*;
}

#mail {
#	# See sample authentication script at:
#	# http://wiki.nginx.org/ImapAuthenticateWithApachePhpScript
#
#	server {
#		listen     localhost:110;
#		protocol   pop3;
#	}
#}
"""

DEBIAN_MIME_TYPES = """
types {
    text/html                                        html htm shtml;
    text/css                                         css;
    application/javascript                           js;
    image/svg+xml                                    svg svgz;
}
"""

DEBIAN_DEFAULT_SITE = r"""server {
	listen 80 default_server;
	listen [::]:80 default_server;

	root /var/www/html;
	index index.html index.htm index.nginx-debian.html;

	server_name _;

	location / {
		try_files $uri $uri/ =404;
	}

	#location ~ \.php$ {
	#	include snippets/fastcgi-php.conf;
	#}

	location ~ /\.ht {
		deny all;
	}
}
"""


def test_debianNginxConf(tmp_path: Path) -> None:
    """
    The stock Debian layout (modules-enabled, mime.types, conf.d,
    sites-enabled) parses into the expected tree.
    """
    _write(tmp_path / "modules-enabled" / "50-mod-stream.conf", "load_module x.so;")
    _write(tmp_path / "mime.types", DEBIAN_MIME_TYPES)
    (tmp_path / "conf.d").mkdir()
    site = _write(tmp_path / "sites-enabled" / "default", DEBIAN_DEFAULT_SITE)
    main = _write(tmp_path / "nginx.conf", DEBIAN_NGINX_CONF)

    config = parseFile(str(main))
    assert [d.name for d in config] == [
        "user",
        "worker_processes",
        "pid",
        "error_log",
        "load_module",
        "events",
        "http",
    ]
    events, http = config[5], config[6]
    assert events.block == (
        Directive("worker_connections", ("768",), None, str(main), 8),
    )
    body = {d.name: d for d in http.block or ()}
    assert body["ssl_protocols"].args == ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
    assert body["log_format"].args == (
        "main",
        '$remote_addr - $remote_user [$time_local] "$request" ',
        '$status $body_bytes_sent "$http_referer"',
    )
    types = body["types"]
    assert [d.name for d in types.block or ()][:2] == ["text/html", "text/css"]
    assert (types.block or ())[0].args == ("html", "htm", "shtml")

    server = body["server"]
    assert (server.filename, server.line) == (str(site), 1)
    serverBody = server.block or ()
    assert [d.args for d in serverBody if d.name == "listen"] == [
        ("80", "default_server"),
        ("[::]:80", "default_server"),
    ]
    locations = [d for d in serverBody if d.name == "location"]
    assert [(d.args, d.line) for d in locations] == [
        (("/",), 10),
        (("~", "/\\.ht"), 18),
    ]
    assert locations[0].block == (
        Directive("try_files", ("$uri", "$uri/", "=404"), None, str(site), 11),
    )
