"""Who runs the receiving server: vendors give codes their own meanings."""

from __future__ import annotations

import re

# (substring of the remote host name or the reply text, vendor)
_SIGNS = (
    ("google.com", "google"),
    ("googlemail.com", "google"),
    ("gsmtp", "google"),
    ("gmail", "google"),
    ("outlook.com", "microsoft"),
    ("hotmail", "microsoft"),
    ("protection.outlook", "microsoft"),
    ("office365", "microsoft"),
    ("resolver.adr", "microsoft"),
    ("microsoft", "microsoft"),
    ("yahoodns.net", "yahoo"),
    ("yahoo", "yahoo"),
    ("aol.com", "yahoo"),
    ("icloud.com", "apple"),
    ("me.com", "apple"),
    ("apple.com", "apple"),
    ("pphosted.com", "proofpoint"),
    ("proofpoint", "proofpoint"),
    ("ppe-hosted", "proofpoint"),
    ("mimecast", "mimecast"),
    ("barracuda", "barracuda"),
    ("iphmx.com", "cisco"),
    ("ironport", "cisco"),
    ("zoho", "zoho"),
    ("gmx.net", "gmx"),
    ("web.de", "gmx"),
    ("mail.ru", "mailru"),
    ("yandex", "yandex"),
)


# Any sign at all, in one scan: most hosts and replies name no vendor, and one search costs
# less than a substring test per sign. Plain words, escaped: nothing here can backtrack.
_ANY_SIGN = re.compile("|".join(re.escape(sign) for sign, _ in _SIGNS))


def detect_vendor(remote_host: str | None, text: str | None = None) -> str | None:
    for haystack in ((remote_host or "").lower(), (text or "").lower()):
        if not haystack or _ANY_SIGN.search(haystack) is None:
            continue  # (with a sign found, the loop below keeps the table's order of precedence)
        for sign, vendor in _SIGNS:
            if sign in haystack:
                return vendor
    return None
