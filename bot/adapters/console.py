"""The console surface: the chat bot in a terminal, no tokens, no network.

Paste a log and end it with an empty line, or with Ctrl-D, which also ends the session; type
/whyfailed ADDRESS, /kb QUERY, /check, /help, /quit. Piped input works the same way, one message per
blank-line-separated block.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from bot.conversation import Context, Conversation, Reply
from bot.render.common import printable
from bot.render.text import print_report

PROMPT = "whyfailed> "
GREETING = "Paste a mail log or bounce, then an empty line (or Ctrl-D). /help for commands, /quit to leave."
HELP = """\
Paste a mail log or a bounce message, then an empty line: I say why the mail
was not delivered. Ctrl-D after a paste diagnoses it too, and ends the session.

  /whyfailed ADDRESS [--since 2d]  deliveries to or from ADDRESS (or @domain)
                   [--check]       ... and check now what the diagnosis blames
  /check                           check the last answer now (DNS, SPF...)
  /kb QUERY                        search the knowledge base: words, codes, ids
  /help                            this text
  /quit                            leave (so does Ctrl-D on an empty line)"""


@dataclass
class Message:
    text: str
    cut: bool = False  # the paste was longer than max_paste_bytes: only its start is in `text`


def render_reply(reply: Reply | None, console: Console) -> None:
    if reply is None:
        console.print("[dim]That does not look like a mail log or a bounce; nothing to diagnose.[/dim]")
        return
    if reply.kind == "report" and reply.report is not None:
        print_report(reply.report, console)
    elif reply.kind == "articles":
        first, *others = reply.articles
        console.print(Markdown(f"# {first.title}\n\n{first.body}"))
        if others:
            console.print("[dim]Also: " + ", ".join(escape(a.id) for a in others) + "[/dim]")
    else:
        console.print(escape(printable(reply.text)))  # a notice may quote what was typed or pasted


def _messages(stream: TextIO, console: Console, interactive: bool, limit: int) -> Iterator[Message]:
    """Yield each message: a /command line, or a paste up to an empty line or the end of input.

    Reads are bounded: a paste keeps at most `limit` characters and the rest of it, up to the
    empty line, is read and dropped, so a pipe with no blank line (or no newline) cannot fill
    memory. `limit` is max_paste_bytes counted in characters; the core cuts to bytes again."""
    block: list[str] = []
    size, cut, partial = 0, False, False  # partial: the last read ended inside a long line
    while True:
        if interactive and not block and not cut and not partial:
            console.print(PROMPT, end="")
        line = stream.readline(limit + 1)
        if not line:  # end of input (Ctrl-D at a terminal)
            if block or cut:
                yield Message("\n".join(block), cut)
            return
        continues, partial = partial, not line.endswith("\n")
        line = line.rstrip("\n")
        if not continues and not block and not cut and line.startswith("/"):
            yield Message(line[:limit])
            continue
        if not continues and not line.strip():
            if block or cut:
                yield Message("\n".join(block), cut)
            block, size, cut = [], 0, False
            continue
        if cut:
            continue
        if continues or size + len(line) + 1 > limit:  # a read that ends mid-line is over the limit
            cut = True  # keep whole lines only; drop the rest of this paste
            continue
        block.append(line)
        size += len(line) + 1


def run_console(conversation: Conversation, stream: TextIO | None = None, console: Console | None = None) -> int:
    stream = stream or sys.stdin
    interactive = stream.isatty()
    console = console or Console(highlight=False)
    context = Context(surface="console", user=_whoami())
    limit = conversation.settings.max_paste_bytes
    last: Reply | None = None  # the last answer with a report: what /check checks
    if interactive:
        console.print(f"[bold]whyfailed chat[/bold] — {GREETING}")
    for message in _messages(stream, console, interactive, limit):
        if message.cut:
            console.print(
                f"[yellow]Note:[/yellow] that paste is longer than {limit // 1000} kB; only its first "
                f"{limit // 1000} kB were read. For whole logs, use `whyfailed diagnose FILE` or `whyfailed ingest`."
            )
        if message.text.startswith("/"):
            command, _, rest = message.text[1:].partition(" ")
            command = command.lower()
            if command in ("quit", "exit", "q"):
                break
            if command == "help":
                reply = Reply("help", text=HELP)
            elif command == "kb":
                reply = conversation.on_command(f"kb {rest}", context)
            elif command == "whyfailed":
                reply = conversation.on_command(rest, context)
            elif command == "check":
                reply = conversation.check_reply(last, context)
            else:
                reply = Reply("notice", text=f"Unknown command /{command}. Try /help.")
        else:
            reply = conversation.on_message(message.text, context) if message.text.strip() else None
        if reply is not None and reply.report is not None:
            last = reply
        render_reply(reply, console)
        console.print()
    return 0


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "console"
