"""The ingest prefilter: one anchored regex that recognises the lines an index never needs, so
they skip sniffing, framing, the syslog header and Lark altogether.

On a busy MX about half of mail.log is such lines: smtpd `connect from` / `disconnect from` /
`lost connection after`, TLS set-up, `warning:` lines, postscreen verdicts, anvil and scache
statistics, and programs that are not mail transfer agents (dovecot, opendkim, amavis, cron).

Why skipping them cannot change the index: correlation (`correlate_queued`) builds stories
only from lines that carry a queue id, from NOQUEUE rejects and from smtp's `connect to ...`
errors; Postfix lines without a queue id tell no story, and a program with no grammar
(format "syslog") feeds no correlator at all. So a line is skipped only when
- it has a plain syslog header that `sniff_line` reads as syslog and `unframe` leaves alone
  (a strict subset of both: a hostname that starts with a letter or digit, no RFC 5424), and
- its program is not one we parse (see `_PROGRAMS` in bot/parse/__init__.py) and names no
  Postfix service, or it is Postfix and the message starts with one of the noise phrases
  below, none of which can be a queue id, `NOQUEUE:` or `connect to`, or
- it is a Postfix queue line that correlation files as context only (`client=`, `removed`,
  bounce notifications): the index keeps attempts and message facts, not context.
tests/test_prefilter.py holds this to account: the same index with and without it.
"""

from __future__ import annotations

import re

_TIMESTAMP = (
    r"(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)"
)
_HEADER = rf"(?:<[0-9]{{1,3}}>)?{_TIMESTAMP} [A-Za-z0-9][A-Za-z0-9._-]* "
# Postfix messages with no queue id that no story is built from.
_POSTFIX_NOISE = (
    r"connect from ",
    r"disconnect from ",
    r"lost connection after ",
    r"timeout after ",
    r"too many errors after ",
    r"(?:Anonymous|Trusted|Untrusted|Verified) TLS connection established ",
    r"SSL_accept error from ",
    r"warning: ",
    r"statistics: ",
    r"improper command pipelining after ",
    # postscreen
    r"CONNECT from ",
    r"PASS (?:NEW|OLD) ",
    r"DISCONNECT ",
    r"DNSBL rank ",
    r"HANGUP after ",
    r"PREGREET ",
    r"COMMAND PIPELINING from ",
    r"(?:WHITE|BLACK|ALLOW|DENY)LISTED ",
)
# A program name that is none of _PROGRAMS: no "postfix" in it, not exim*, sendmail, sm-*,
# smtpd (OpenSMTPD), qmail* or haraka.
_OTHER_PROGRAM = r"(?![^\s\[\]:]*postfix)(?!exim|sendmail[\[:]|sm-|smtpd[\[:]|qmail|haraka[\[:])[^\s\[\]:]++"

# Queue lines that are context only: correlation keeps them beside a message's stories, but the
# index stores attempts and message facts (sender, message-id), never context.
# (Possessive: a queue id is followed by ":", which neither form contains, so no shorter match of
# one could be followed by it; each line is tried once per form, not once per length.)
_QUEUE_ID = r"(?:[0-9A-F]{5,15}+|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,20}+)"
_POSTFIX_CONTEXT = rf"{_QUEUE_ID}: (?:client=|removed|sender (?:non-delivery|delivery status|delay) notification: )"

# The program name: the first "postfix" in it found from the left and the rest taken whole (what
# follows is "[" or ":", outside the class), so a name is read once, not backtracked over.
_SKIP = re.compile(
    rf"{_HEADER}(?:[^\s\[\]:]*?postfix[^\s\[\]:]*+(?:\[[0-9]+\])?: (?:{'|'.join(_POSTFIX_NOISE)}|{_POSTFIX_CONTEXT})"
    rf"|{_OTHER_PROGRAM}(?:\[[0-9]+\])?:)"
)


def needless(line: str) -> bool:
    """True for a line the index never needs (see the module docstring)."""
    return _SKIP.match(line) is not None
