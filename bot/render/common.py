"""What every renderer says the same way: verdicts, labels, the facts of a delivery."""

from __future__ import annotations

from bot.model import STAGE_LABELS, Attempt, Delivery

VERDICTS = {
    "delivered": "delivered",
    "deferred": "deferred (temporary failure, will be retried)",
    "bounced": "bounced (permanent failure)",
    "rejected": "rejected by the receiving server",
    "expired": "expired in the queue (gave up retrying)",
    "unknown": "outcome not in the log",
}
ICONS = {"delivered": "✓", "deferred": "…", "bounced": "✗", "rejected": "✗", "expired": "✗", "unknown": "?"}
MAX_EVIDENCE = 12
# C0 controls but tab and newline, DEL, and C1 controls: a log line carrying ESC (CSI, OSC),
# BEL or a lone CR could clear a terminal, retitle it or overwrite what was shown. SMTP replies
# are written by whoever runs the remote server, so they are shown as visible escapes instead.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}


def printable(text: str) -> str:
    """TEXT with every control character but \\t and \\n shown as its escape: `\\x1b[2J`, not a clear screen."""
    return text.translate(_CONTROLS)


def verdict(delivery: Delivery) -> str:
    """The outcome in words. A reject in an inbound story was ours: the log is our server's, and
    it refused the connecting client (the receiving server is then us)."""
    if delivery.status == "rejected" and delivery.direction == "in":
        return "rejected by our server"
    return VERDICTS[delivery.status]


def recipient_label(delivery: Delivery) -> str:
    if delivery.recipient is None:
        return "(no recipient reached)"
    if delivery.recipient.startswith("@"):
        return f"(any recipient at {delivery.recipient[1:]})"
    return delivery.recipient


def stage_label(attempt: Attempt | None) -> str | None:
    if attempt is None or attempt.stage is None:
        return None
    return STAGE_LABELS.get(attempt.stage, attempt.stage)


def server_label(attempt: Attempt | None) -> str | None:
    if attempt is None:
        return None
    if attempt.remote_host and attempt.remote_ip:
        return f"{attempt.remote_host} [{attempt.remote_ip}]"
    return attempt.remote_host or attempt.remote_ip


def remote_label(delivery: Delivery) -> str:
    """What to call the other end: for a story our server received, the host that connected to
    us is the client (the reply was ours); otherwise it is the server that answered us."""
    return "Client" if delivery.direction == "in" else "Server"


def clock(attempt: Attempt) -> str:
    if attempt.timestamp is None:
        return ""
    if attempt.timestamp.year <= 1900:  # a session log's time of day only
        return attempt.timestamp.strftime("%H:%M:%S")
    return attempt.timestamp.strftime("%Y-%m-%d %H:%M:%S")


def timeline(delivery: Delivery) -> list[str]:
    """One line per attempt, when the story has more than one."""
    if len(delivery.attempts) < 2:
        return []
    rows = []
    for attempt in delivery.attempts:
        reply = " ".join(x for x in (str(attempt.reply_code or ""), attempt.enhanced_status or "") if x)
        if attempt.text and reply and attempt.text.startswith(reply.split(" ")[0]):
            reply = ""  # the text quotes the codes already
        when = clock(attempt)
        rows.append(
            " ".join(x for x in (when, attempt.status, reply) if x)
            + (f": {shorten(attempt.text, 120)}" if attempt.text else "")
        )
    return rows


def shorten(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
