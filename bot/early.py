"""`why ADDRESS --log FILE`: grep started in the first milliseconds of the process.

grep reads a 143 MB log in about 0.1 s, on its own core. Started once the command line and the
parsers were imported, it ended well after them; started here, before anything but os and sys
is imported, it reads the file while Python imports. So this module imports nothing else: no
re, pathlib, typing, threading, shutil or signal (each of those costs grep a millisecond or more).

start() reads the command line the narrow way (a value it does not read as click would starts
nothing), spawns one grep per plain log file, and keeps each process for bot.sources.grep to
adopt (adopt_early there gives each its reader thread). A scan is used only when the command
asks for the same file and address; one nobody asks for is stopped at exit. Click parses the
command line as always, but for the one that quick_json reads: `why ADDRESS --log FILE
--format json`, which bot.__main__ answers without importing click.
"""

import atexit
import os
from _signal import SIGKILL, SIGPIPE  # the signal module's own numbers: `signal` builds enums first

MAX_MATCHED_LINES = 200_000  # bound the work one query can cause
WHY_LIMIT = 20  # the stories `why` lists when --limit does not say (bot.cli)
EARLY_SCANS = 4  # files grep starts on before the parsers are imported (each its own process)

# The options of `why` that take a value, and its flags: what start() understands
VALUE_OPTIONS = {"--since", "--db", "--log", "--source", "--limit", "--format", "-f", "--resolver"}
FLAGS = {"--check"}

# (log as given, address, most) -> (grep's pid, the read end of its output), until adopted
_STARTED: dict[tuple[str, str, int], tuple[int, int]] = {}
_OFF = ("off", "0", "no")
_ASCII_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_UNSET = object()
_grep: object = _UNSET


def grep_command() -> str | None:
    """The system's grep (as shutil.which finds it), or None. WHYFAILED_GREP=off turns it off
    (bot.sources.scan then searches). Looked up once per process."""
    global _grep
    if _grep is _UNSET:
        _grep = None if os.environ.get("WHYFAILED_GREP", "").lower() in _OFF else _which("grep")
    return _grep  # type: ignore[return-value]


def _which(name: str) -> str | None:
    # shutil.which's search, without importing shutil (and the bz2 and lzma it imports)
    path = os.environ.get("PATH")
    if path is None:
        try:
            path = os.confstr("CS_PATH")
        except (AttributeError, ValueError):
            path = os.defpath
    seen = set()
    for folder in path.split(os.pathsep) if path else ():
        if folder in seen:
            continue
        seen.add(folder)
        candidate = os.path.join(folder, name)
        if os.path.exists(candidate) and os.access(candidate, os.F_OK | os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def spawn_grep(grep: str, path: object, needles: list[bytes], ignore_case: bool, most: int) -> tuple[int, int]:
    """Start grep for the lines of PATH holding any of the needles (ASCII case folded if
    ignore_case), at most MOST of them: (its pid, the read end of its output). Raises OSError.

    With os.posix_spawn, not subprocess: this runs before anything else is imported, and the
    subprocess module's own imports cost more than a tenth of a `why --log` query."""
    # the needles one a line on grep's input, not as arguments: a domain's thousands of
    # queue ids would pass the system's limit on a command line
    command = [grep, "-a", "-n", "-F", *(["-i"] if ignore_case else []), "-m", str(most), "-f", "-"]
    needles_in, needles_out = os.pipe()  # both ends close on exec; grep gets its copies
    lines_in, lines_out = os.pipe()
    try:
        pid = os.posix_spawn(
            grep,
            [*command, "--", os.fsencode(path)],
            _environment(),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, needles_in, 0),
                (os.POSIX_SPAWN_DUP2, lines_out, 1),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
            setsigdef=(SIGPIPE,),  # Python ignores it; grep should not (as subprocess does)
        )
    except OSError:
        for end in (needles_in, needles_out, lines_in, lines_out):
            os.close(end)
        raise
    os.close(needles_in)
    os.close(lines_out)
    try:  # grep reads all its needles before it writes a line: this cannot wait on its output
        with open(needles_out, "wb") as needles_file:
            needles_file.write(b"".join(n + b"\n" for n in needles if n))
    except OSError:  # grep is gone already: reading its output reports its failure
        pass
    return pid, lines_in


def _environment() -> dict[str, str]:
    # the C locale: bytes are bytes, -i folds A-Z only; grep's own option variables left out
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREP_", "LC_", "LANG"))}
    return {**env, "LC_ALL": "C"}


def start(argv: list[str]) -> None:
    """For `why ADDRESS --log FILE ...` (argv without the program), start grep on each plain
    FILE before the command line is parsed and the parsers are imported: the command, parsed
    by click as always, takes these scans when its address and files are the same ones. Any
    argument this does not read the way click would (a glob, --opt=value, --help) starts nothing."""
    if not argv or argv[0] != "why":
        return
    positional, logs, rest = [], [], iter(argv[1:])
    for argument in rest:
        if argument in VALUE_OPTIONS:
            value = next(rest, None)
            if value is None:
                return
            if argument == "--log":
                logs.append(value)
        elif argument in FLAGS:
            continue
        elif argument.startswith("-"):
            return
        else:
            positional.append(argument)
    if len(positional) != 1 or not logs:
        return
    address = target(positional[0])
    grep = grep_command()
    if address is None or grep is None:
        return
    for log in logs[:EARLY_SCANS]:
        key = (log, address, MAX_MATCHED_LINES)
        if key in _STARTED or any(c in log for c in "*?[") or not greppable(log):
            continue
        try:
            _STARTED[key] = spawn_grep(grep, log, [address.encode()], True, MAX_MATCHED_LINES)
        except OSError:  # the command's own search meets the same trouble, and falls back
            continue
        if len(_STARTED) == 1:
            atexit.register(_stop)


def quick_json(argv: list[str]) -> tuple[str, list[str]] | None:
    """(address, logs) when ARGV (without the program) is `why ADDRESS --log PATH... --format json`
    (or -f json), in any order, each option and its value two words, and nothing else: what
    bot.__main__ answers without importing click (its imports are 30 ms of a 0.18 s query). None for any
    other command line, which click reads as always. Narrow on purpose: a value that starts with
    "-", --opt=value, any other option or a second format is left to click, so that whatever
    this reads, click reads the same (tests/test_why_quick.py holds the two equal)."""
    if not argv or argv[0] != "why":
        return None
    positional: list[str] = []
    logs: list[str] = []
    formats: list[str] = []
    words = iter(argv[1:])
    for word in words:
        if word in ("--log", "--format", "-f"):
            value = next(words, None)
            if value is None or value.startswith("-"):
                return None
            (logs if word == "--log" else formats).append(value)
        elif word.startswith("-"):
            return None
        else:
            positional.append(word)
    if len(positional) != 1 or not logs or formats != ["json"]:
        return None
    address = target(positional[0])
    return (address, logs) if address is not None else None


def started() -> bool:
    """Whether start() started a search that is not taken yet."""
    return bool(_STARTED)


def take() -> dict[tuple[str, str, int], tuple[int, int]]:
    """The processes start() started, keyed by (log as given, address, most): the caller owns
    them now (reads their output, waits for them)."""
    taken = dict(_STARTED)
    _STARTED.clear()
    return taken


def _stop() -> None:
    # started, never adopted (the command failed before bot.sources.grep took them)
    for pid, output in take().values():
        os.close(output)
        try:
            os.kill(pid, SIGKILL)  # as GrepScan.close stops a search nobody asked for
            os.waitpid(pid, 0)
        except OSError:
            pass


def target(text: str) -> str | None:
    """What bot.why.lookup_target makes of TEXT (the address or queue id the command looks
    up), or None where it raises ValueError; without re (tests/test_early.py holds them equal)."""
    found = text.strip().strip("<>")
    if "@" in found:
        address = found.strip().strip("<>").lower()
        if not address or address.count("@") != 1 or any(c.isspace() for c in address):
            return None
        return found
    # lookup_target's queue id: [0-9A-Za-z][0-9A-Za-z-]{4,29}
    if 5 <= len(found) <= 30 and found[0] in _ASCII_ALNUM and all(c in _ASCII_ALNUM or c == "-" for c in found):
        return found
    return None


def greppable(path: str) -> bool:
    """A plain, non-empty file: grep reads it (a compressed one is read by bot.sources.scan).
    The test bot.why makes of a Path, made of the text it is built from (tests/test_early.py)."""
    parts = [part for part in path.split("/") if part and part != "."]  # as pathlib reads them
    name = parts[-1] if parts else ""
    if name.endswith(".gz") and name.rfind(".") > 0:  # pathlib's suffix: not a name's leading dot
        return False
    try:
        status = os.stat(("/" if path.startswith("/") else "") + "/".join(parts) or ".")
    except (OSError, ValueError):
        return False
    return (status.st_mode & 0o170000) == 0o100000 and status.st_size > 0  # stat.S_ISREG
