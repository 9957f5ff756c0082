"""A Discord message's attachments: which are ours to read, and no more of them than the core keeps.

The core reads at most max_paste_bytes of a message, so no more than that (and one byte, to
know it was cut) is downloaded across all of a message's attachments, streamed from the CDN
in bounded reads: what Discord says a file weighs is not what its CDN may send.
"""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
import discord

log = logging.getLogger("whyfailed.discord")

TEXT_FILE = re.compile(r".*\.(log|txt|eml)(\.\d{1,3})?", re.IGNORECASE)  # mail.log.1 too
MAX_ATTACHMENTS = 10  # Discord's own cap per message
TIMEOUT = 30  # seconds per file


def is_text(attachment: discord.Attachment) -> bool:
    """Logs, text and saved emails; images, archives and PDFs are not ours to read."""
    content_type = (attachment.content_type or "").split(";")[0]
    return bool(
        TEXT_FILE.fullmatch(attachment.filename) or content_type.startswith("text/") or content_type == "message/rfc822"
    )


def size_label(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB" if count >= 1_000_000 else f"{count:,} bytes"


class AttachmentReader:
    """One HTTP session for Discord's CDN, kept by the bot and closed with it."""

    def __init__(self, max_file_bytes: int, max_message_bytes: int):
        self.max_file_bytes, self.max_message_bytes = max_file_bytes, max_message_bytes
        self.session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def read(self, attachments: list[discord.Attachment], already: int) -> tuple[list[str], list[str], list[str]]:
        """(texts, file names, problems) for a message whose own text is `already` bytes."""
        texts, names, problems = [], [], []
        room = self.max_message_bytes - already
        for attachment in attachments[:MAX_ATTACHMENTS]:
            if not is_text(attachment):
                continue
            if attachment.size > self.max_file_bytes:
                problems.append(
                    f"{attachment.filename} is {size_label(attachment.size)}; I read files up to "
                    f"{size_label(self.max_file_bytes)}. Attach or paste the relevant lines."
                )
                continue
            if room <= 0:
                most = size_label(self.max_message_bytes)
                problems.append(f"{attachment.filename} was not read: I read at most {most} of one message.")
                continue
            try:
                cap = min(self.max_file_bytes, room)
                data = await asyncio.wait_for(self.download(attachment.url, cap), timeout=TIMEOUT)
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                log.warning("could not read attachment %s: %r", attachment.id, error)
                problems.append(f"I could not download {attachment.filename}.")
                continue
            if b"\x00" in data[:8192]:
                problems.append(f"{attachment.filename} is not text.")
                continue
            room -= len(data) + 1  # and the newline that joins it to the rest
            texts.append(data.decode("utf-8", "replace"))
            names.append(attachment.filename)
        return texts, names, problems

    async def download(self, url: str, cap: int) -> bytes:
        """At most cap + 1 bytes, read as they come; past that the connection is dropped."""
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession()
        data = bytearray()
        async with self.session.get(url) as response:
            response.raise_for_status()
            while len(data) <= cap and (chunk := await response.content.read(cap + 1 - len(data))):
                data += chunk
            if len(data) > cap:
                response.close()  # hang up rather than drain the rest
        return bytes(data)
