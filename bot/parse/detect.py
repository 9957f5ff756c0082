"""Sniff what a line is before parsing it, cheaply.

Each check is a plain prefix test or an anchored regex with no nested quantifiers,
so hostile input costs linear time. Formats may mix within one paste: we sniff per line.
"""

from __future__ import annotations

import re

# "192.0.2.7 [00000A1C] 10:15:03 ..." / "SYSTEM [00000B20] ..."
_SESSION = re.compile(r"[0-9A-Za-z.:_-]{1,64} \[[0-9A-Fa-f]{1,16}\] [0-9A-Z]")
# "S: ...", "C: ...", "server: ...", ">>> ...", "<-- ..."
_TRANSCRIPT = re.compile(r"(?i:s|c|server|client)\s?:|<<<|>>>|<--|-->|<-|->")
# "<22>", "<22>1 ", "Nov 29 03:32:49", "Nov  9 ...", "2026-11-29T03:32:49"
_SYSLOG = re.compile(
    r"(<[0-9]{1,3}>(1 )?)?([A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:)"
)

# Phrases that mark a whole text as a bounce (a DSN or an NDR), not a log.
BOUNCE_MARKERS = (
    "final-recipient:",
    "report-type=delivery-status",
    "message/delivery-status",
    "undelivered mail returned to sender",
    "delivery status notification",
    "mail delivery failed",
    "mail delivery subsystem",
    "mailer-daemon@",
    "this is the mail system at host",
    "could not be delivered to one or more of its",
    "delivery has failed to these recipients",
    "your message couldn't be delivered",
    "your message wasn't delivered",
    "the response from the remote server was",
    "this is the qmail-send program",
    "sorry, we were unable to deliver your message",
    "delivery to the following recipient",
    "remote server returned '",
    "message/feedback-report",
    "auto-submitted: auto-replied",
    "undeliverable:",
    "returned mail: ",
    "failure notice",
)


# Exim's own log files: "2026-11-28 10:15:02 " (a space, not a T). A syslog line with such a
# stamp has "host program[pid]:" next: parse_line falls back to the syslog grammar for it.
_EXIM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?( [+-][0-9]{4})?( \[[0-9]+\])? ")


# '"SMTPD"\t4124\t31\t"2026-...' (hMailServer)
_HMAIL = re.compile(r'"[A-Z]{3,12}"\t[0-9]+\t')
# "Mon 2026-11-28 10:15:02.123: " (MDaemon)
_MDAEMON = re.compile(r"([A-Z][a-z]{2} )?[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?: ")
# "@400000006567a1b20c3b5e1c " (qmail through multilog)
_QMAIL = re.compile(r"@4000[0-9a-f]{20} ")
# "[NOTICE] [uuid] [plugin] " (Haraka), optionally after a timestamp
_HARAKA = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+(Z|[+-][0-9:]+)? +)?\[(DATA|PROTOCOL|DEBUG|INFO|NOTICE|WARN|"
    r"ERROR|CRIT|ALERT|EMERG)\] \["
)


def sniff_line(line: str) -> str | None:
    """Which grammar to try on this line (exim, session, hmailserver, mdaemon, qmail, haraka,
    transcript, syslog), or None."""
    if _EXIM.match(line):
        return "exim"
    if _HMAIL.match(line):
        return "hmailserver"
    if _MDAEMON.match(line):
        return "mdaemon"
    if _QMAIL.match(line):
        return "qmail"
    if _HARAKA.match(line):
        return "haraka"
    if _SESSION.match(line):
        return "session"
    stripped = line.lstrip()
    if _TRANSCRIPT.match(stripped):
        return "transcript"
    if _SYSLOG.match(line):
        return "syslog"
    return None


def looks_like_bounce(text: str) -> bool:
    head = text[:65536].lower()
    if "#fields: date-time" in head:  # an Exchange tracking log mentions NDRs, it is not one
        return False
    if any(marker in head for marker in BOUNCE_MARKERS):
        # A log that merely mentions a bounce ("sender non-delivery notification") stays a log:
        # a bounce has few syslog-shaped lines.
        lines = head.splitlines()[:200]
        loggy = sum(1 for line in lines if _SYSLOG.match(line) or _SESSION.match(line))
        return loggy < max(3, len(lines) // 3)
    return False
