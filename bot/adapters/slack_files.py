"""Files shared in Slack: which ones we read, and fetching them without sending the bot token astray.

A file's download needs the bot token, so the token goes only to Slack's file host, and never
along a redirect (urllib would carry the Authorization header to wherever one points).
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlparse

from slack_sdk import WebClient

TEXT_FILETYPES = {"text", "log", "plain", "eml", "email", "csv", "json", "diff", "markdown", "yaml", "xml", "shell"}


def file_info(file: dict, client: WebClient) -> dict:
    """The event's file object when it is complete, else files.info's."""
    if file.get("file_access") == "check_file_info" or not file.get("url_private"):
        return client.files_info(file=file["id"])["file"]
    return file


def read_text_file(info: dict, client: WebClient, trusted_hosts: set[str], limit: int) -> str | None:
    """A shared file's text, at most LIMIT + 1 bytes (so the core notes the cut); None for a file
    that is not text. Raises OSError or ValueError, with a reason a person can read."""
    mimetype, filetype = info.get("mimetype") or "", info.get("filetype") or ""
    if not (mimetype.startswith("text/") or mimetype == "message/rfc822" or filetype in TEXT_FILETYPES):
        return None  # images, PDFs, archives: not ours to read
    url = info.get("url_private_download") or info.get("url_private") or ""
    if urlparse(url).hostname not in trusted_hosts:
        raise ValueError("the file is not hosted by Slack")  # never send the bot token elsewhere
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {client.token}"})
    with _NO_REDIRECTS.open(request, timeout=15) as answer:
        data = answer.read(limit + 1)
    if b"\x00" in data[:8192]:
        return None  # binary after all, whatever its type said
    return data.decode("utf-8", "replace")


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise OSError(f"the download was redirected (HTTP {code}), and I do not follow redirects with the bot token")


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)
