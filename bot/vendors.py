"""Who runs the receiving server: vendors give codes their own meanings."""

from __future__ import annotations

from bot.phrase_index import FirstListed

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


_FIRST_SIGN = FirstListed(_SIGNS)


def detect_vendor(remote_host: str | None, text: str | None = None) -> str | None:
    for haystack in ((remote_host or "").lower(), (text or "").lower()):
        vendor = _FIRST_SIGN(haystack) if haystack else None
        if vendor is not None:
            return vendor
    return None
