"""`why --log` searched with the system's grep, in the background: the two passes an admin
would type (the address, then its queue ids), run by grep in its own process, so the log is
read on another core while Python imports the parsers (grep -i over 143 MB: about 0.1 s, no
faster than bot.sources.scan, but off the critical path when a core is free).

The lines are the ones bot.sources.scan finds: grep runs in the C locale, so `-i` folds
ASCII letters only, as bytes.lower() does; `-a` reads every byte as text; line numbers count
newlines as scan does. Where grep is missing or fails, first() and second() return None and
the caller searches with scan instead.

The second pass is started early, on a guess: as soon as the address's lines are found, the
queue ids a Postfix line shows ('postfix/smtp[12]: 4448D29412: to=<...>') are searched for,
before the parser has said which ids the lines really hold. second() uses that search only
when the real ids are among the guessed ones, keeping the lines that hold a real id; otherwise
it searches again for the real ids. A guess changes when the lines arrive, never which.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from pathlib import Path

from bot import early

# A queue id in a Postfix line: after the program's "]: ", before ":", with a digit in it (so
# NOQUEUE and words are not taken; an id without digits is simply not guessed)
_GUESS = re.compile(r"\]: ((?=[A-Za-z]*[0-9])[0-9A-Za-z]{6,20}):")
_GUESS_MOST = 64  # more ids than this: no guess (their search would find too much)


class _Grep:
    """One grep process for lines holding any of some needles (bot.early.spawn_grep started
    it), read by lines()."""

    def __init__(self, pid: int, output: int, most: int) -> None:
        self.most = most
        self._pid = pid
        self._exit: int | None = None
        self._reaping = threading.Lock()  # os.waitpid by one thread at a time
        self._output = open(output, "rb")  # closed by lines() or stop()

    @classmethod
    def start(cls, grep: str, path: Path, needles: list[bytes], ignore_case: bool, most: int) -> _Grep:
        """Raises OSError."""
        return cls(*early.spawn_grep(grep, path, needles, ignore_case, most), most)

    def _wait(self) -> int:
        with self._reaping:
            return self._reap(0)

    def lines(self) -> list[tuple[int, str]] | None:
        """(line number, line) in file order, or None if grep failed."""
        output = self._output.read()
        self._output.close()
        if self._wait() not in (0, 1):  # 1: nothing found; 2: trouble
            return None
        found = []
        # decoded at once: an invalid byte is replaced as it would be in its own line, since
        # no UTF-8 sequence spans the newline between two lines
        for line in output.decode("utf-8", "replace").split("\n")[:-1]:
            number, _, text = line.partition(":")
            found.append((int(number), text))
        return found

    def kill(self) -> None:
        # under the lock: the process is not reaped meanwhile (by a thread in lines()), so the
        # id is still grep's, running or ended, when the signal is sent
        with self._reaping:
            if self._reap(os.WNOHANG) is None:
                os.kill(self._pid, early.SIGKILL)

    def running(self) -> bool:
        with self._reaping:
            return self._reap(os.WNOHANG) is None

    def _reap(self, options: int) -> int | None:
        """grep's exit code, reaping it when it has ended (OPTIONS 0: wait for that; os.WNOHANG:
        do not), or None while it runs. Called under _reaping."""
        if self._exit is None:
            ended, status = os.waitpid(self._pid, options)
            if ended:
                self._exit = os.waitstatus_to_exitcode(status)
        return self._exit

    def stop(self) -> None:
        self.kill()
        self._output.close()
        self._wait()


_EARLY: dict[tuple[Path, str, int], GrepScan] = {}  # scans started before they were asked for


def start_early(path: Path, address: str, most: int, started: tuple[int, int] | None = None) -> None:
    """Start a scan now (or take grep's process STARTED, its pid and output, as the scan's
    first search), for a later scan_for() with the same arguments to take."""
    if not _EARLY:  # registered again after _stop_early(): harmless, it stops what is left
        atexit.register(_stop_early)  # one not taken (a usage error, say) is stopped at exit
    if (path, address, most) not in _EARLY:
        _EARLY[(path, address, most)] = GrepScan(path, address, most, started)
    elif started is not None:  # the same file named twice (mail.log and ./mail.log)
        _Grep(*started, most).stop()


def adopt_early() -> None:
    """Take the searches bot.early started in the process's first milliseconds: each gets its
    reader thread now, as a scan start_early() started would."""
    for (log, address, most), started in early.take().items():
        start_early(Path(log), address, most, started)


def scan_for(path: Path, address: str, most: int) -> GrepScan:
    """The scan start_early() started for these arguments, else a new one."""
    return _EARLY.pop((path, address, most), None) or GrepScan(path, address, most)


def _stop_early() -> None:
    while _EARLY:
        _EARLY.popitem()[1].close()


class GrepScan:
    """The address's lines, then its messages' lines, of one plain (uncompressed) log file."""

    def __init__(self, path: Path, address: str, most: int, started: tuple[int, int] | None = None) -> None:
        self._grep, self._path, self._most = early.grep_command(), path, most
        self._first: list[tuple[int, str]] | None = None
        self._guessed: set[str] = set()
        self._second: _Grep | None = None
        self._running: _Grep | None = None  # the first search, while it runs
        self._closed = False
        self._ready = threading.Thread(target=self._run_first, args=(address, started), daemon=True)
        if self._grep is not None:
            self._ready.start()

    def _run_first(self, address: str, started: tuple[int, int] | None) -> None:
        try:
            if started is not None:
                self._running = _Grep(*started, self._most)
            else:
                self._running = _Grep.start(self._grep, self._path, [address.encode()], True, self._most)
        except OSError:
            return
        self._first = self._running.lines()
        if self._first and not self._closed:
            guessed = {m.group(1) for _, line in self._first for m in _GUESS.finditer(line)}
            if 0 < len(guessed) <= _GUESS_MOST:
                try:
                    self._second = _Grep.start(
                        self._grep, self._path, [i.encode() for i in sorted(guessed)], False, self._most
                    )
                    self._guessed = guessed
                except OSError:
                    pass

    def first(self) -> list[tuple[int, str]] | None:
        """(line number, line) for the lines holding the address, any case; None: grep failed."""
        if self._grep is None:
            return None
        self._ready.join()
        return self._first

    def reading(self) -> bool:
        """Whether first() will wait for grep: its first search is still reading the file."""
        return self._ready.is_alive()

    def will_read(self, ids: set[str]) -> bool:
        """Whether second(ids) will wait for grep to read the file: the guessed search is still
        reading it, or the ids were not all guessed and will be searched for anew."""
        self.first()
        if self._second is not None and ids <= self._guessed:
            return self._second.running()
        return self._grep is not None

    def second(self, ids: set[str]) -> list[tuple[int, str]] | None:
        """(line number, line) for the lines holding any of these ids (exact case); None: grep failed."""
        self.first()
        guess, self._second = self._second, None
        if guess is not None and ids <= self._guessed:  # guessed ids are ASCII: str and bytes agree
            found = guess.lines()
            # a search stopped at its limit may have missed lines of the real ids: not used then
            if found is not None and len(found) < guess.most:
                return [(n, line) for n, line in found if any(i in line for i in ids)]
        elif guess is not None:
            guess.stop()
        if self._grep is None:
            return None
        try:
            return _Grep.start(self._grep, self._path, [i.encode() for i in sorted(ids)], False, self._most).lines()
        except OSError:
            return None

    def close(self) -> None:
        """Stop the searches nobody asked for: a guessed one, and a first one still reading
        (a scan left by an error, or started early for a command that did not run)."""
        self._closed = True
        if self._running is not None:
            self._running.kill()
        self.first()
        if self._second is not None:
            self._second.stop()
            self._second = None
