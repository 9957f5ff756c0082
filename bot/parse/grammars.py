"""Build the Lark parsers once per process, from the .lark files, with a disk cache.

LALR with the contextual lexer: linear time, and the lexer only tries the terminals
that can follow, which keeps free-text terminals from swallowing structure.
The Transformer runs inside the parser (no tree is built), which roughly halves the cost.

Lark itself is imported when a parser is first built, not with this module: importing it
costs more than a whole `why --log` query spends reading its lines, and the lines that fill a
log take the token paths (see `token_path`), whose regexes come from the data cache.
`grammars.LarkError` is Lark's, for an `except` clause: looked up only when something was
raised, which only a parser, and so an imported Lark, can have done.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from bot import __version__
from bot.datacache import cache_dir, cached, sha1, write_whole
from bot.resources import grammar_dir

if TYPE_CHECKING:
    from lark import Lark


def __getattr__(name: str):
    if name == "LarkError":  # see the module's docstring
        from lark.exceptions import LarkError

        return LarkError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plugins() -> dict:
    try:  # Cython build of Lark's LALR parser and lexer: same grammars, about twice the speed.
        import lark_cython
    except ImportError:  # a platform without a wheel for it still runs, just slower
        return {}
    return {"_plugins": lark_cython.plugins}


def _cache_file(name: str) -> str:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return ""
    return str(folder / f"{name}-{_grammars_digest()}.cache")


@cache  # read once per process, not once per grammar: a Postfix line needs three grammars
def _grammars_digest() -> str:
    # Keyed by the grammar text and our version, so an upgrade never reads stale tables.
    digest = sha1()
    for path in sorted(grammar_dir().glob("*.lark")):
        digest.update(path.read_bytes())
    digest.update(__version__.encode())
    return digest.hexdigest()[:16]


@cache
def parser(name: str, transformer_cls: type) -> Lark:
    """The grammar's LALR parser, with an instance of TRANSFORMER_CLS inside it. Lark looks the
    transformer's methods up by the names of the rules and terminals (lark's ParseTreeBuilder),
    so a class need not derive from lark.Transformer; those on the token paths' way (syslog,
    postfix, reply) do not, so that importing them does not import Lark."""
    from lark import Lark
    from lark.exceptions import GrammarError

    path = grammar_dir() / f"{name}.lark"
    options = dict(
        parser="lalr", lexer="contextual", transformer=transformer_cls(), maybe_placeholders=False, **_plugins()
    )
    cache_file = _cache_file(name)
    sealed = bool(cache_file) and _intact(cache_file)
    try:
        try:
            lark = Lark.open(str(path), cache=cache_file or False, **options)
        except (OSError, EOFError, ValueError):
            # An unreadable or corrupt cache must never stop the bot: build without it.
            return Lark.open(str(path), **options)
    except GrammarError as error:
        # Not a LarkError to the callers, who read those as "this line does not parse":
        # a broken grammar must fail loudly, not make every line unparsed.
        raise RuntimeError(f"grammar/{name}.lark does not build: {error}") from error
    if cache_file and not sealed:  # Lark has just written its tables there
        _seal(cache_file)
    return lark


# Lark reads any cache file that unpickles, and a damaged byte can unpickle into other tables
# (a terminal renamed, a state lost): so each file has its digest beside it, written when Lark
# wrote the file, and a file that does not match it is removed for Lark to build it again.
def _intact(cache_file: str) -> bool:
    try:
        with open(cache_file, "rb") as tables, open(cache_file + ".sha1", "rb") as seal:
            if sha1(tables.read()).digest() == seal.read():
                return True
    except OSError:  # no file or no seal: Lark writes the file, then it is sealed
        pass
    try:
        os.remove(cache_file)
    except OSError:
        pass
    return False


def _seal(cache_file: str) -> None:
    try:
        with open(cache_file, "rb") as tables:
            digest = sha1(tables.read()).digest()
        write_whole(cache_file + ".sha1", digest)  # a reader sees a whole seal or none
    except OSError:
        pass


def parse_or_none(name: str, transformer_cls: type, text: str):
    """Run a grammar on one line; None when the line is not in that grammar's language."""
    from lark.exceptions import LarkError

    try:
        return parser(name, transformer_cls).parse(text)
    except LarkError:
        return None


# What `%ignore " "` lets stand before, between and after any two tokens: possessive, as the
# lexer skips every space there is before it looks for the next token.
IGNORED_SPACES = " *+"


def token_pattern(lark: Lark, terminal: str, group: str | None = None) -> str:
    """TERMINAL of LARK's grammar as the lexer matches it, for a regex that follows one of the
    grammar's token paths (see `token_path`): atomic, because the lexer fixes a token's span
    from the terminal's own regex and never gives characters back for the next token to use."""
    pattern = f"(?>{lark.get_terminal(terminal).pattern.to_regexp()})"
    return f"(?P<{group}>{pattern})" if group else pattern


def optional(pattern: str) -> str:
    """An optional token (or run of tokens) of a path: taken whenever it matches, as the lexer
    takes a terminal that matches where the parser may shift it; a regex would otherwise try
    the path without it too, and read "250 2.0.0 \tx" in a way the parser refuses."""
    return f"(?>(?:{pattern})?)"


def token_path(lark: Lark, *parts: str) -> re.Pattern:
    """One anchored regex for a sequence of token patterns (see `token_pattern`, `optional`),
    with the spaces the grammar ignores around each. It reads a line exactly as the parser does
    only when, at each token, no terminal that the lexer tries first could match there; whoever
    builds one says why that holds and a test holds it to the parser (tests/test_token_paths.py).
    Why bother: on the few line shapes that fill a busy log, one regex match costs a tenth of
    a parser run, whose overhead is fixed per call however short the line."""
    ignored = [t.pattern.value for t in lark.lexer_conf.terminals if t.name in lark.lexer_conf.ignore]
    if ignored != [" "]:  # the spaces between tokens below are what this one ignore rule allows
        raise RuntimeError(f"token_path expects a grammar that ignores single spaces, not {ignored}")
    return re.compile(IGNORED_SPACES + IGNORED_SPACES.join(parts) + IGNORED_SPACES)


def first_tokens(lark: Lark) -> str:
    """A regex that every text of LARK's language matches at its start: the ignored spaces, then
    one of the terminals the parser can shift first (those of its start state). The contextual
    lexer tries only those there, so a text that matches none of them is refused by the parser
    before it reads a token: checked first, that refusal costs one regex, not a parser run and
    its exception (tests/test_token_paths.py holds the two to agree)."""
    table = lark.parser.parser._parse_table
    accepted = table.states[table.start_states["start"]]
    names = {t.name for t in lark.terminals}
    terminals = sorted(name for name in accepted if name in names)  # (the rest are rules: gotos)
    return IGNORED_SPACES + "(?:" + "|".join(lark.get_terminal(t).pattern.to_regexp() for t in terminals) + ")"


def _lark_files() -> list[Path]:
    # lark/__init__.py holds Lark's version: another Lark may write a terminal's regex otherwise
    from importlib.util import find_spec  # found, not imported: Lark itself stays unloaded

    spec = find_spec("lark")
    return [Path(spec.origin)] if spec is not None and spec.origin else []


def derived_regexes(name: str, build: Callable[[], dict[str, str]], code: str) -> dict[str, str]:
    """The regexes BUILD derives from the grammars' terminals (token paths, which load a parser
    and so Lark), from the data cache when an earlier run derived them from the same grammars,
    the same CODE (the file of the module they belong to), this module and the same Lark. The
    grammar stays their one definition: the cache only remembers what was derived from it.
    The grammars are in the key by their digest, read once per process for all of these caches
    and Lark's tables alike."""
    sources = [Path(code), Path(__file__), *_lark_files()]
    return cached(f"regexes-{name}", sources, build, key=_grammars_digest().encode())
