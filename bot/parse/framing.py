"""Take off what log collectors wrap around a log line: journald JSON, Docker's json-file,
Kubernetes CRI and `kubectl logs --prefix`, `docker compose logs` prefixes.

Each check is a prefix test or an anchored, linear regex; JSON is decoded only for lines
that start with '{' and are of a sane length.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from bot.parse.timestamps import parse_iso

MAX_JSON_LINE = 64 * 1024
# "2026-11-28T10:15:02.123456789Z stdout F <line>" (CRI, what kubelet writes on nodes)
_CRI = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2}) (stdout|stderr) [FP] ")
# "postfix-1  | <line>" (docker compose logs)
_COMPOSE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62} +\| ")
# "[pod/mail-0/postfix] <line>" (kubectl logs --prefix)
_KUBECTL = re.compile(r"\[[a-z]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+\] ")


def unframe(line: str) -> tuple[str, dict | None]:
    """(inner line, journald header fields or None). Lines with no framing come back as they are."""
    if line.startswith("{") and len(line) <= MAX_JSON_LINE:
        try:
            record = json.loads(line)
        except ValueError:
            return line, None
        if isinstance(record, dict):
            if "MESSAGE" in record:
                return _journald(record)
            if isinstance(record.get("log"), str):  # Docker json-file
                return record["log"].rstrip("\n"), None
        return line, None
    for pattern in (_CRI, _KUBECTL, _COMPOSE):
        match = pattern.match(line)
        if match:
            return line[match.end() :], None
    return line, None


def _journald(record: dict) -> tuple[str, dict]:
    """`journalctl -o json`: the fields a syslog header would carry, and the message."""
    message = record.get("MESSAGE")
    if isinstance(message, list):  # journald stores non-UTF-8 messages as byte arrays
        message = bytes(x for x in message if isinstance(x, int) and 0 <= x < 256).decode("utf-8", "replace")
    stamp = None
    micros = record.get("__REALTIME_TIMESTAMP") or record.get("_SOURCE_REALTIME_TIMESTAMP")
    if isinstance(micros, str) and micros.isdigit():
        stamp = datetime.fromtimestamp(int(micros) / 1_000_000, tz=UTC)
    elif isinstance(record.get("SYSLOG_TIMESTAMP"), str):
        stamp = parse_iso(record["SYSLOG_TIMESTAMP"].strip())
    pid = record.get("SYSLOG_PID") or record.get("_PID")
    header = {
        "timestamp": stamp,
        "host": record.get("_HOSTNAME"),
        "program": record.get("SYSLOG_IDENTIFIER") or record.get("_COMM"),
        "pid": int(pid) if isinstance(pid, str) and pid.isdigit() else None,
    }
    return str(message or ""), header
