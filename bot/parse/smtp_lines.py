"""What session logs and transcripts share: one SMTP command or reply per line."""

from __future__ import annotations

from lark import Transformer

from bot.parse.peers import strip_angle


def address_in(argument: str) -> str | None:
    """The address in 'TO:<bob@example.org> NOTIFY=NEVER' (or 'TO: bob@example.org')."""
    _, colon, rest = argument.partition(":")
    if not colon:
        return None
    rest = rest.strip()
    if rest.startswith("<"):
        end = rest.find(">")
        return strip_angle(rest[: end + 1]) if end > 0 else None
    return rest.split(" ", 1)[0] or None


class SmtpLineTransformer(Transformer):
    def smtp_reply(self, children):
        code_token = str(children[0])
        fields = {
            # "250-PIPELINING": one line of a multi-line reply; the last line has no dash
            "kind": "reply-continued" if code_token.endswith("-") else "reply",
            "role": "server",
            "reply_code": int(code_token[:3]),
        }
        text_parts = [code_token[:3]]
        for child in children[1:]:
            if child.type == "ENHANCED":
                fields["enhanced_status"] = str(child)
            text_parts.append(str(child))
        fields["text"] = " ".join(text_parts)
        return fields

    def smtp_command(self, children):
        verb = str(children[0]).upper()
        argument = str(children[1]) if len(children) > 1 else ""
        fields = {
            "kind": "command",
            "role": "client",
            "command": verb,
            "argument": argument,
            "text": f"{verb} {argument}".strip(),
        }
        if verb == "MAIL":
            fields["sender"] = address_in(argument)
        elif verb == "RCPT":
            fields["recipient"] = address_in(argument)
        return fields
