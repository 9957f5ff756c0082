"""`why ADDRESS`: the latest deliveries to or from an address, from the index or from logs.

Without an index, a log is scanned the way an admin would with grep, only cheaper: find the
lines that mention the address, collect their queue ids, then parse just the lines that carry
one of those ids (or the address) and tell their stories.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `why --log` needs no database: sqlite-utils is imported only for the index
    from bot.model import Delivery, Event, Report
    from bot.sources.grep import GrepScan
    from bot.store import Store

from bot.early import EARLY_SCANS, MAX_MATCHED_LINES, WHY_LIMIT, greppable

_DURATION = re.compile(r"([0-9]+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """'90m', '2h', '7d', '1w2d' -> timedelta; raises ValueError with a readable message."""
    parts = _DURATION.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text.strip().lower()):
        raise ValueError(f"'{text}' is not a duration: write it like 90m, 2h, 7d or 1w")
    return timedelta(**_sum(parts))


def _sum(parts) -> dict:
    total: dict[str, int] = {}
    for number, unit in parts:
        total[_UNITS[unit]] = total.get(_UNITS[unit], 0) + int(number)
    return total


def normalise_address(address: str) -> str:
    address = address.strip().strip("<>").lower()
    if not address or (address.count("@") != 1) or any(c.isspace() for c in address):
        raise ValueError(f"'{address}' is not an email address or @domain")
    return address


# A queue id as MTAs write them: Postfix's short hex and long base-52 ids, Exim's
# 1a2B3c-000abc-Zz, Sendmail's 2AB3cDE4f012345. No '@', which keeps it apart from the rest.
_QUEUE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{4,29}")


def lookup_target(text: str) -> str:
    """What `whyfailed why` looks up: an address or @domain (compared without case), a
    Message-ID (it looks like an address, so the same text finds both; compared as given), or
    a queue id (no '@'; compared as given, as Postfix's long ids mix cases). Raises ValueError."""
    target = text.strip().strip("<>")
    if "@" in target:
        normalise_address(target)  # the same checks an address gets
        return target
    if _QUEUE_ID.fullmatch(target):
        return target
    raise ValueError(f"'{target}' is not an email address, @domain, Message-ID or queue id")


def describe_target(target: str) -> str:
    """'to or from ADDRESS', 'with queue id X': how a report names what was looked up."""
    return f"to or from {target}" if "@" in target else f"with queue id {target}"


def _matches(delivery: Delivery, target: str) -> bool:
    recipient = (delivery.recipient or "").lower()
    sender = (delivery.sender or "").lower()
    if target.startswith("@"):
        return recipient.endswith(target.lower()) and delivery.status != "delivered"
    if "@" in target:
        return target.lower() in (recipient, sender) or delivery.message_id == target
    return delivery.queue_id == target


def why_from_store(
    store: Store, address: str, since: timedelta | None, limit: int = WHY_LIMIT, source: str | None = None
) -> Report:
    from bot.model import Report
    from bot.rules import diagnose_deliveries

    deliveries = store.find(address, since, limit, source=source)
    diagnose_deliveries(deliveries)
    return Report(input=f"index {store.where}", formats=[], lines=0, parsed=0, deliveries=deliveries, unparsed=[])


def labelled(report: Report, address: str) -> Report:
    """REPORT as the `why` command shows it: named for what was looked up, and where."""
    report.input = f"why {address} ({report.input})"
    return report


def why_from_logs(patterns: list[str], address: str, since: timedelta | None, limit: int = WHY_LIMIT) -> Report:
    """Scan logs without an index: a prefilter pass for the address, a second for its queue ids."""
    from bot.sources.files import expand
    from bot.sources.grep import scan_for

    files = [p for pattern in patterns for p in expand(pattern) if p.exists()]
    # grep starts on the first plain files now, and reads them while the parsers are imported
    early = {p: scan_for(p, address, MAX_MATCHED_LINES) for p in dict.fromkeys(files[:EARLY_SCANS]) if _greppable(p)}
    try:
        deliveries = [story for path in files for story in _stories(path, address, early.pop(path, None))]
    finally:
        for scan in early.values():  # left by an error: their grep processes are stopped
            scan.close()
    if since is not None:
        cutoff = datetime.now() - since
        deliveries = [
            d
            for d in deliveries
            if d.final and (d.final.timestamp is None or d.final.timestamp.replace(tzinfo=None) >= cutoff)
        ]
    deliveries.sort(
        key=lambda d: d.final.timestamp.replace(tzinfo=None) if d.final and d.final.timestamp else datetime.min,
        reverse=True,
    )
    from bot.model import Report
    from bot.rules import diagnose_deliveries

    deliveries = diagnose_deliveries(deliveries[:limit])
    return Report(input=", ".join(patterns), formats=[], lines=0, parsed=0, deliveries=deliveries, unparsed=[])


def _stories(path: Path, address: str, scan: GrepScan | None) -> list[Delivery]:
    """The stories of one log file that involve the address, their evidence numbered as in the file."""
    # The parsers (and Lark) are imported here, not at the top: `why` from the index needs none of them.
    from bot.correlate import correlate_events
    from bot.sources.grep import scan_for

    if scan is None and _greppable(path):
        scan = scan_for(path, address, MAX_MATCHED_LINES)
    try:
        events = _events_of(path, address, scan)
    finally:
        if scan is not None:
            scan.close()
    return [story for story in correlate_events(events) if _matches(story, address)]


def _greppable(path: Path) -> bool:
    """A plain, non-empty file: grep reads it (a compressed one is read by bot.sources.scan)."""
    return greppable(str(path))  # the test bot.early applies to the command line's files


def _events_of(path: Path, address: str, scan: GrepScan | None) -> list[Event]:
    """The events of the lines that mention the address and of every line of the messages they
    belong to (their queue ids), at most MAX_MATCHED_LINES lines, in file order and numbered as
    in the file. Searched by grep when it is there (scan), else, with the same result, by
    bot.sources.scan. Each line is parsed once: the address's lines, for their queue ids, then
    only the messages' other lines (for a busy @domain, most of the address's lines again)."""
    if scan is not None and scan.reading():
        _knowledge_meanwhile()
        for prepare in _MEANWHILE:
            if not scan.reading():
                break
            prepare()
    hits = scan.first() if scan is not None else None
    if hits is None:
        return _scanned_events(path, address)
    events = _parsed(hits)
    ids = _sessions(events)
    if not ids:
        return events
    if scan.will_read(ids):
        _postfix_parser_meanwhile()
        _knowledge_meanwhile()
    more = scan.second(ids)
    if more is None:
        return _scanned_events(path, address)
    return _with_more(hits, events, more)


def _with_more(hits: list[tuple[int, str]], events: list[Event], more: list[tuple[int, str]]) -> list[Event]:
    """EVENTS (those of HITS) with those of the lines of MORE that HITS lacks, in file order: the
    events of sorted(HITS and MORE), the first MAX_MATCHED_LINES lines of them, parsed as before."""
    kept = sorted({*hits, *more})[:MAX_MATCHED_LINES]
    if not kept:
        return []
    last, known = kept[-1][0], {number for number, _ in hits}
    extra = _parsed([(number, line) for number, line in kept if number not in known])
    # stable: a line's own events (an Exchange row can give several) keep their order
    return sorted([e for e in events if e.line <= last] + extra, key=lambda e: e.line)


def _parsed(lines: list[tuple[int, str]]) -> list[Event]:
    """The events of these (line number, line) pairs, each numbered as in the file."""
    from bot.parse import parse_lines

    numbers = [number for number, _ in lines]
    events = parse_lines([line for _, line in lines], tally=False).events
    for event in events:
        event.line = numbers[event.line - 1]
    return events


def _sessions(events: list[Event]) -> set[str]:
    """The queue (or session) ids of these events."""
    return {event.session for event in events if event.session}


def _knowledge_meanwhile() -> None:
    """While grep reads the file, load the knowledge base the diagnoses will need (read from
    the data cache, and kept: load_articles caches it): on this core, that is time otherwise
    spent waiting for grep's answer, and the diagnoses that follow it start at once. If the
    answer holds no story, the load was not needed, but it took no time the query waited for."""
    from bot.knowledge import load_articles

    load_articles()


def _code_tables_meanwhile() -> None:
    """While grep reads: the tables of SMTP codes that each diagnosis quotes (a millisecond)."""
    from bot.codes import load_code_tables

    load_code_tables()


def _token_paths_meanwhile() -> None:
    """While grep still reads the file, import the parsers and build the regexes that read
    Postfix's lines without Lark (bot.parse.postfix and .reply: from the data cache, then
    compiled), the lines most logs hold: the parse that follows grep's answer then starts at
    once (10 of the 15 ms it took for ten lines). Lines of another MTA do without it; they lose
    nothing unless the data cache is cold, which makes the regexes with Lark (once)."""
    from bot.parse import postfix, reply

    postfix.prepare()
    reply.prepare()


# What is done while grep reads the file, in turn, as long as it reads (after the knowledge base):
# only what the answer needs, if its lines are Postfix's. (Laying out the rules for a status ahead
# took 3 ms a status; done for the four common ones, it delayed an answer that needed one of them
# when grep ended first, as it does when click is imported.)
_MEANWHILE = (_token_paths_meanwhile, _code_tables_meanwhile)


def _postfix_parser_meanwhile() -> None:
    """While grep reads the file again for the messages' lines, load the Postfix grammar's
    parser (and Lark) on this core, if the address's lines were Postfix's: a message may have
    lines the token paths do not read (smtp's "connect to host[ip]:25: ..." errors, a reply
    from an odd peer), and the parse that follows grep's answer would otherwise wait for Lark's
    import, which this overlaps with grep (0.07 s less from grep's answer to ours, measured
    when "removed" still needed the parser; for a message the paths read whole it costs no
    wall time, as grep's second pass takes longer than the load)."""
    import sys

    if "bot.parse.postfix" in sys.modules:  # imported by _parsed, for a Postfix line
        from bot.parse.grammars import parser
        from bot.parse.postfix import PostfixTransformer

        parser("postfix", PostfixTransformer)


def _scanned_events(path: Path, address: str) -> list[Event]:
    from bot.sources.scan import open_log

    with open_log(path) as log:  # one map for both passes, which share their line counting
        hits = log.grep([address.encode()], ignore_case=True)[:MAX_MATCHED_LINES]
        events = _parsed(hits)
        ids = _sessions(events)
        if not ids:
            return events
        more = log.grep([i.encode() for i in sorted(ids)])  # the second pass: every line of those messages
    return _with_more(hits, events, more)
