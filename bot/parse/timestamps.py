"""Turn the timestamp shapes that mail logs use into datetimes.

RFC 3164 stamps carry no year: we take the year that puts the stamp closest before
`now` (a December log read in January belongs to last year).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}


@lru_cache(maxsize=8192)
def parse_bsd(text: str, now: datetime | None = None) -> datetime | None:
    # Cached: a busy log repeats each second on many lines.
    parts = text.split()
    if len(parts) != 3 or parts[0] not in _MONTHS:
        return None
    now = now or datetime.now()
    clock = parts[2].split(".")[0]
    try:
        hour, minute, second = (int(x) for x in clock.split(":"))
        stamp = datetime(now.year, _MONTHS[parts[0]], int(parts[1]), hour, minute, second)
    except ValueError:
        return None
    if stamp - now > timedelta(days=2):
        stamp = stamp.replace(year=now.year - 1)
    return stamp


@lru_cache(maxsize=8192)
def parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        return None


def parse_rfc2822(text: str) -> datetime | None:
    from email.utils import parsedate_to_datetime  # imported here: syslog and ISO stamps never need it

    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def parse_clock(text: str) -> datetime | None:
    """A bare time of day: keep it on a fixed date so that it still orders lines."""
    try:
        return datetime.strptime(text.split(".")[0], "%H:%M:%S")
    except ValueError:
        return None


def parse_any(token_type: str, text: str) -> datetime | None:
    if token_type.endswith("TS_3164"):
        return parse_bsd(text)
    if token_type.endswith("TS_ISO"):
        return parse_iso(text)
    if token_type.endswith("TS_RFC2822"):
        return parse_rfc2822(text)
    if token_type.endswith("CLOCK"):
        return parse_clock(text)
    return None
