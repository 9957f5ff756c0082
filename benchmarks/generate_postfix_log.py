"""Write a synthetic but realistic Postfix log: many messages, each with its cleanup, qmgr,
smtp status and removed lines; a share deferred, bounced, greylisted, rejected.

    python benchmarks/generate_postfix_log.py --lines 1000000 --out /tmp/postfix-1M.log
"""

from __future__ import annotations

import argparse
import random
from datetime import datetime, timedelta

OUTCOMES = [
    (70, "sent", "2.0.0", "250 2.0.0 Ok: queued as {qid2}"),
    (
        8,
        "deferred",
        "4.2.0",
        "host {mx}[{ip}] said: 450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, "
        "see https://postgrey.example.net/ (in reply to RCPT TO command)",
    ),
    (
        6,
        "bounced",
        "5.1.1",
        "host {mx}[{ip}] said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown "
        "in virtual mailbox table (in reply to RCPT TO command)",
    ),
    (5, "deferred", "4.4.1", "connect to {mx}[{ip}]:25: Connection timed out"),
    (4, "bounced", "5.2.2", "host {mx}[{ip}] said: 552 5.2.2 <{rcpt}>: Mailbox full (in reply to RCPT TO command)"),
    (
        4,
        "bounced",
        "5.7.1",
        "host {mx}[{ip}] said: 554 5.7.1 Service unavailable; Client host [192.0.2.10] "
        "blocked using zen.spamhaus.org (in reply to RCPT TO command)",
    ),
    (
        3,
        "bounced",
        "5.4.4",
        "Host or domain name not found. Name service error for name={domain} type=MX: Host not found",
    ),
]
WEIGHTS = [w for w, *_ in OUTCOMES]


def queue_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(10))


def generate(lines: int, seed: int = 7):
    rng = random.Random(seed)
    clock = datetime(2026, 11, 1, 0, 0, 0)
    written = 0
    while written < lines:
        clock += timedelta(seconds=rng.randint(0, 3))
        stamp = (
            clock.strftime("%b %d %H:%M:%S").replace(" 0", "  ", 1)
            if clock.day < 10
            else clock.strftime("%b %d %H:%M:%S")
        )
        qid = queue_id(rng)
        user = f"user{rng.randint(1, 50000)}"
        domain = f"dest{rng.randint(1, 2000)}.example"
        rcpt = f"{user}@{domain}"
        sender = f"sender{rng.randint(1, 500)}@example.com"
        mx, ip = f"mx.{domain}", f"198.51.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        weight, status, dsn, text = rng.choices(OUTCOMES, weights=WEIGHTS)[0]
        detail = text.format(qid2=queue_id(rng), mx=mx, ip=ip, rcpt=rcpt, domain=domain)
        relay = "none" if dsn in ("4.4.1", "5.4.4") else f"{mx}[{ip}]:25"
        yield f"{stamp} mx1 postfix/smtpd[{rng.randint(100, 9999)}]: {qid}: client=relay.example.com[192.0.2.5]"
        pid, size, serial = rng.randint(100, 9999), rng.randint(800, 90000), rng.randint(1, 10**9)
        yield f"{stamp} mx1 postfix/cleanup[{pid}]: {qid}: message-id=<{qid}.{serial}@example.com>"
        yield f"{stamp} mx1 postfix/qmgr[980]: {qid}: from=<{sender}>, size={size}, nrcpt=1 (queue active)"
        yield (
            f"{stamp} mx1 postfix/smtp[{rng.randint(100, 9999)}]: {qid}: to=<{rcpt}>, relay={relay}, "
            f"delay={rng.uniform(0.1, 9):.2f}, delays=0.01/0/0.5/0.3, dsn={dsn}, status={status} ({detail})"
        )
        yield f"{stamp} mx1 postfix/qmgr[980]: {qid}: removed"
        written += 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with open(args.out, "w", encoding="utf-8") as handle:
        for line in generate(args.lines, args.seed):
            handle.write(line + "\n")
    print(f"wrote {args.lines} lines to {args.out}")


if __name__ == "__main__":
    main()
