"""Microsoft Exchange message tracking logs: CSV under a '#Fields:' header.

The csv module reads the rows (quoting, embedded commas); the recipient-status text is read
with the reply grammar like any other quoted SMTP reply.
"""

from __future__ import annotations

import csv

from bot.parse.reply import parse_reply
from bot.parse.timestamps import parse_iso

_EVENTS = {"SEND": "delivered", "DELIVER": "delivered", "FAIL": "bounced", "DEFER": "deferred"}


def read_fields(header_line: str) -> list[str]:
    """'#Fields: date-time,client-ip,...' -> ['date-time', 'client-ip', ...]."""
    return [name.strip() for name in header_line.split(":", 1)[1].split(",")]


def parse_exchange_row(line: str, names: list[str]) -> list[dict] | None:
    """One CSV row -> event fields, one per recipient it names (or None when it is not a row)."""
    try:
        values = next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return None
    if len(values) < min(len(names), 10):
        return None
    row = dict(zip(names, values, strict=False))
    event_id = row.get("event-id", "").upper()
    base = {
        "timestamp": parse_iso(row.get("date-time", "").rstrip("Z") + "+00:00") if row.get("date-time") else None,
        # internal-message-id alone keys the story: server-hostname names the remote on SEND rows
        "host": None,
        "program": f"exchange/{row.get('source', '').lower()}",
        "session": row.get("internal-message-id") or row.get("message-id") or None,
        "message_id": row.get("message-id", "").strip("<>") or None,
        "sender": row.get("sender-address") or None,
    }
    recipients = [r for r in row.get("recipient-address", "").split(";") if r]
    if event_id == "RECEIVE":
        return [
            {
                **base,
                "kind": "queued",
                "remote_ip": row.get("client-ip") or None,
                "remote_host": row.get("client-hostname") or None,
                "direction": "in",
            }
        ]
    if event_id in _EVENTS:
        status_text = row.get("recipient-status", "")
        statuses = status_text.split(";") if len(recipients) > 1 else [status_text]
        found = []
        for index, recipient in enumerate(recipients or [None]):
            text = statuses[index] if len(statuses) == len(recipients) else status_text
            reply = parse_reply(text.strip("{}[] ")) if text else None
            found.append(
                {
                    **base,
                    "kind": "status",
                    "status": _EVENTS[event_id],
                    "recipient": recipient,
                    "text": reply.text if reply else event_id,
                    "reply_code": reply.code if reply else None,
                    "enhanced_status": reply.enhanced if reply else None,
                    "stage": reply.stage if reply else None,
                    "remote_ip": row.get("server-ip") if event_id == "SEND" else None,
                    "remote_host": row.get("server-hostname") if event_id == "SEND" else None,
                    "direction": "out",
                }
            )
        return found
    if event_id == "DSN":
        return [{**base, "kind": "notification", "text": f"DSN generated: {row.get('reference', '')}"}]
    return [{**base, "kind": "info", "text": f"{event_id} {row.get('source-context', '')}".strip()}]
