"""Split the host[ip]:port notation that Postfix and others use for peers."""

from __future__ import annotations


def split_peer(peer: str) -> tuple[str | None, str | None]:
    """'mx.example.org[192.0.2.25]:25' -> ('mx.example.org', '192.0.2.25')."""
    open_at = peer.find("[")
    if open_at < 0:
        return (peer or None), None
    close_at = peer.find("]", open_at)
    host = peer[:open_at] or None
    ip = peer[open_at + 1 : close_at if close_at > 0 else None] or None
    if host in ("unknown", "none"):
        host = None
    return host, ip


def strip_angle(address: str) -> str:
    """'<bob@example.org>' -> 'bob@example.org'; '<>' -> '' (the null sender)."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        return address[1:-1]
    return address
