"""Compare whyfailed's report on a captured log with what the scripted servers did."""

from __future__ import annotations

from bot.model import Delivery, Report
from tests.mta.scenarios import Expect


def deliveries_to(report: Report, recipient: str) -> list[Delivery]:
    return [d for d in report.deliveries if (d.recipient or "").lower() == recipient.lower()]


def describe(delivery: Delivery) -> str:
    final = delivery.final
    diagnosis = delivery.diagnosis
    related = [r.id for r in diagnosis.related] if diagnosis else []
    lines = [
        f"  status={delivery.status} diagnosis={diagnosis.id if diagnosis else None} related={related}",
        f"  stage={final.stage if final else None} reply_code={final.reply_code if final else None} "
        f"enhanced_status={final.enhanced_status if final else None}",
    ]
    lines += [f"  {e.line:5} | {e.text}" for e in delivery.evidence()]
    return "\n".join(lines)


def mismatches(delivery: Delivery, expect: Expect) -> list[str]:
    """What differs between one delivery and what was expected (empty: all good)."""
    final = delivery.final
    diagnosis = delivery.diagnosis
    got = {
        "status": delivery.status,
        "diagnosis": diagnosis.id if diagnosis else None,
        "stage": final.stage if final else None,
        "reply_code": final.reply_code if final else None,
        "enhanced_status": final.enhanced_status if final else None,
    }
    problems = [
        f"{key}: expected {getattr(expect, key)!r}, got {got[key]!r}"
        for key in ("status", "diagnosis")
        if got[key] != getattr(expect, key)
    ]
    problems += [
        f"{key}: expected {getattr(expect, key)!r}, got {got[key]!r}"
        for key in ("stage", "reply_code", "enhanced_status")
        if getattr(expect, key) is not None and got[key] != getattr(expect, key)
    ]
    related = {r.id for r in diagnosis.related} if diagnosis else set()
    missing = [rid for rid in expect.related if rid not in related]
    if missing:
        problems.append(f"related: expected to contain {missing}, got {sorted(related)}")
    return problems


def check_recipient(report: Report, recipient: str, expect: Expect) -> str | None:
    """None when the report says what was expected for this recipient, else an explanation."""
    found = deliveries_to(report, recipient)
    if len(found) != 1:
        listing = "\n".join(describe(d) for d in found)
        return f"{recipient}: expected one delivery, found {len(found)}\n{listing}"
    problems = mismatches(found[0], expect)
    if problems:
        return f"{recipient}: " + "; ".join(problems) + "\n" + describe(found[0])
    return None


def check_sender(report: Report, sender: str, expect: Expect) -> str | None:
    """Every bounce notice to the sender was accepted by the scripted server."""
    found = deliveries_to(report, sender)
    if not found:
        return f"{sender}: no delivery of a bounce notice found"
    bad = [(d, mismatches(d, expect)) for d in found]
    bad = [(d, p) for d, p in bad if p]
    if bad:
        return f"{sender}: {len(bad)} of {len(found)} bounce notices differ\n" + "\n".join(
            "; ".join(p) + "\n" + describe(d) for d, p in bad
        )
    return None


def unexpected_recipients(report: Report, known: set[str]) -> list[str]:
    known = {k.lower() for k in known}
    return sorted({d.recipient or "<none>" for d in report.deliveries if (d.recipient or "").lower() not in known})
