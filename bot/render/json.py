"""The JSON report: the contract in DESIGN.md, for programs."""

from __future__ import annotations

import json as _json

from bot.model import Attempt, Delivery, Report
from bot.render.checks import checks_to_list

# json.dumps escapes C0 controls (ESC is written \u001b) but not DEL or C1 (U+009B is a CSI to
# some terminals): escaping them too gives the same data, safe to print where a person looks
_UNPRINTABLE = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0))}


def _time(attempt: Attempt | None) -> str | None:
    if attempt is None or attempt.timestamp is None:
        return None
    return attempt.timestamp.isoformat()


def attempt_to_dict(attempt: Attempt) -> dict:
    return {
        "status": attempt.status,
        "time": _time(attempt),
        "smtp_stage": attempt.stage,
        "reply_code": attempt.reply_code,
        "enhanced_status": attempt.enhanced_status,
        "remote_host": attempt.remote_host,
        "remote_ip": attempt.remote_ip,
        "text": attempt.text,
        "lines": [e.line for e in attempt.evidence],
    }


def delivery_to_dict(delivery: Delivery) -> dict:
    final = delivery.final
    diagnosis = delivery.diagnosis
    return {
        "recipient": delivery.recipient,
        "sender": delivery.sender,
        "queue_id": delivery.queue_id,
        "message_id": delivery.message_id,
        "direction": delivery.direction,
        "status": delivery.status,
        "reply_code": final.reply_code if final else None,
        "enhanced_status": final.enhanced_status if final else None,
        "smtp_stage": final.stage if final else None,
        "remote_host": final.remote_host if final else None,
        "remote_ip": final.remote_ip if final else None,
        "text": final.text if final else None,
        "attempts": [attempt_to_dict(a) for a in delivery.attempts],
        "first_seen": _time(delivery.attempts[0] if delivery.attempts else None),
        "last_seen": _time(final),
        "diagnosis": None
        if diagnosis is None
        else {
            "id": diagnosis.id,
            "title": diagnosis.title,
            "severity": diagnosis.severity,
            "who_acts": diagnosis.who_acts,
            "confidence": diagnosis.confidence,
            "confidence_label": diagnosis.confidence_label,
            "summary": diagnosis.summary,
            "explanation": diagnosis.explanation,
            "article": diagnosis.article,
            "next_steps": list(diagnosis.next_steps),
            "related": [{"id": r.id, "title": r.title, "note": r.note} for r in diagnosis.related],
            "evidence": [{"line": e.line, "text": e.text} for e in delivery.evidence()],
        },
        **({"checks": checks_to_list(delivery.checks)} if delivery.checks is not None else {}),
    }


def report_to_dict(report: Report) -> dict:
    return {
        "input": report.input,
        "formats": report.formats,
        "stats": {
            "lines": report.lines,
            "parsed": report.parsed,
            "unparsed": len(report.unparsed),
            "formats": report.format_stats,
        },
        "deliveries": [delivery_to_dict(d) for d in report.deliveries],
        "unparsed": [{"line": u.line, "text": u.text} for u in report.unparsed],
        "notes": report.notes,
    }


def dumps(data, indent: int | None = None) -> str:
    """JSON text, UTF-8 as is, with every control character escaped."""
    return _json.dumps(data, indent=indent, ensure_ascii=False).translate(_UNPRINTABLE)


def render_json(report: Report, indent: int | None = 2) -> str:
    return dumps(report_to_dict(report), indent)
