"""Explain SMTP reply codes (RFC 5321) and enhanced status codes (RFC 3463, IANA) in words."""

from __future__ import annotations

from functools import cache

from bot.datacache import cached
from bot.resources import package_data


def load_code_tables() -> None:
    """Load the tables now (from the data cache), not at the first code explained."""
    _tables()


@cache
def _tables() -> dict:
    path = package_data("smtp_codes.yaml")
    return cached("smtp-codes", [path], lambda: _load(path))


def _load(path) -> dict:
    import yaml

    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def explain_reply_code(code: int | None) -> str | None:
    if code is None:
        return None
    entry = _tables()["reply_codes"].get(str(code))
    if entry:
        return f"{code}: {entry['meaning']}"
    klass = {
        2: "success",
        3: "the server waits for more input",
        4: "a temporary failure: the sender's server should retry",
        5: "a permanent failure",
    }.get(code // 100)
    return f"{code}: not a standard reply code; its first digit means {klass}." if klass else None


def explain_enhanced(status: str | None) -> str | None:
    if not status:
        return None
    parts = status.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    tables = _tables()
    klass = tables["enhanced_classes"].get(parts[0], {}).get("meaning")
    detail = tables["enhanced_details"].get(f"X.{parts[1]}.{parts[2]}", {}).get("meaning")
    subject = tables["enhanced_subjects"].get(parts[1], {}).get("meaning")
    words = detail or (f"{subject} (detail {parts[2]} is not in the registry)" if subject else None)
    if not (klass or words):
        return None
    return f"{status}: " + " ".join(x.rstrip(".") + "." for x in (words, klass) if x)


def explain_codes(code: int | None, enhanced: str | None) -> str:
    return " ".join(x for x in (explain_reply_code(code), explain_enhanced(enhanced)) if x)
