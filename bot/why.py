"""`why ADDRESS`: the latest deliveries to or from an address, from the index or from logs.

Without an index, a log is scanned the way an admin would with grep, only cheaper: find the
lines that mention the address, collect their queue ids, then parse just the lines that carry
one of those ids (or the address) and tell their stories.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.model import Delivery, Evidence, Report
from bot.rules import diagnose_deliveries

if TYPE_CHECKING:  # `why --log` needs no database: sqlite-utils is imported only for the index
    from bot.store import Store

_DURATION = re.compile(r"([0-9]+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_MATCHED_LINES = 200_000  # bound the work one query can cause


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


def _matches(delivery: Delivery, address: str) -> bool:
    recipient = (delivery.recipient or "").lower()
    sender = (delivery.sender or "").lower()
    if address.startswith("@"):
        return recipient.endswith(address) and delivery.status != "delivered"
    return address in (recipient, sender)


def why_from_store(
    store: Store, address: str, since: timedelta | None, limit: int = 20, source: str | None = None
) -> Report:
    deliveries = store.find(address, since, limit, source=source)
    diagnose_deliveries(deliveries)
    return Report(input=f"index {store.where}", formats=[], lines=0, parsed=0, deliveries=deliveries, unparsed=[])


def why_from_logs(patterns: list[str], address: str, since: timedelta | None, limit: int = 20) -> Report:
    """Scan logs without an index: a prefilter pass for the address, a second for its queue ids."""
    # The parsers (and Lark) are imported here, not at the top: `why` from the index needs none of them.
    from bot.correlate import correlate_events
    from bot.parse import parse_line, parse_lines
    from bot.sources.files import expand
    from bot.sources.scan import open_log

    files = [p for pattern in patterns for p in expand(pattern) if p.exists()]
    deliveries: list[Delivery] = []
    for path in files:
        with open_log(path) as log:  # one map for both passes, which share their line counting
            hits = log.grep([address.encode()], ignore_case=True)[:MAX_MATCHED_LINES]
            ids = set()
            for _, line in hits:
                parsed = parse_line(line.rstrip("\r"))  # a CRLF log's lines keep their CR; parse_lines drops it too
                if parsed and parsed[1].get("session"):
                    ids.add(parsed[1]["session"])
            if ids:  # the second pass: every line of those messages
                hits = sorted({*hits, *log.grep([i.encode() for i in sorted(ids)])})[:MAX_MATCHED_LINES]
        if not hits:
            continue
        numbers = [number for number, _ in hits]
        parsed = parse_lines([line for _, line in hits])
        renumber = dict(enumerate(numbers, start=1))
        for story in correlate_events(parsed.events):
            for attempt in story.attempts:
                attempt.evidence = [Evidence(renumber.get(e.line, e.line), e.text) for e in attempt.evidence]
            story.context = [Evidence(renumber.get(e.line, e.line), e.text) for e in story.context]
            if _matches(story, address):
                deliveries.append(story)
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
    deliveries = diagnose_deliveries(deliveries[:limit])
    return Report(input=", ".join(patterns), formats=[], lines=0, parsed=0, deliveries=deliveries, unparsed=[])
