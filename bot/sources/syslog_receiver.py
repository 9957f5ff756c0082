"""A syslog receiver, so that many mail servers can forward to one bot: UDP (one message per
datagram) and TCP with newline framing or RFC 6587 octet counting, messages in RFC 3164 or
RFC 5424 form.

The network side (asyncio) only frames messages and puts them on a bounded queue; a writer
thread with its own connection to the index takes them off in batches, parses them and writes
each batch with the count of messages indexed. Under a flood the queue drops its oldest
messages and counts them: memory stays bounded and the newest lines win.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.ingest import IngestStats, parse_chunk, write_parsed
from bot.store import Position, Store

log = logging.getLogger("whyfailed.sources.syslog")

MAX_MESSAGE = 16 * 1024
_PRI = re.compile(rb"<([0-9]{1,3})>")
# RFC 3164: "Nov 28 10:15:02 host tag[pid]: msg"; a relay may have left out the host.
_BSD_STAMP = re.compile(r"[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} ")


def _structured_data_end(text: str) -> int:
    """Where RFC 5424 STRUCTURED-DATA ('-' or '[id k="v" ...]...') ends in `text`."""
    if text.startswith("-"):
        return 1
    index, inside, quoted = 0, False, False
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == '"':
                quoted = False
        elif char == '"' and inside:
            quoted = True
        elif char == "[" and not inside:
            inside = True
        elif char == "]" and inside:
            inside = False
        elif not inside:
            return index
        index += 1
    return index


def normalise_message(data: bytes, peer: str) -> str | None:
    """A syslog message off the wire -> the line a log file would hold ("TIMESTAMP HOST
    PROGRAM[PID]: MESSAGE"), which the syslog grammar reads. None for an empty message."""
    data = data.rstrip(b"\r\n\0")
    pri = _PRI.match(data)
    body = data[pri.end() :] if pri else data
    text = body[:MAX_MESSAGE].decode("utf-8", "replace")
    if not text.strip():
        return None
    if pri and text.startswith("1 "):
        return _from_5424(text, peer)
    if _BSD_STAMP.match(text):
        stamp, rest = text[:15], text[16:]
        first = rest.split(" ", 1)[0]
        if first.endswith(":") or "[" in first:  # no HOSTNAME field: the sender's address
            rest = f"{peer} {rest}"
        return f"{stamp} {rest}"
    return text


def _from_5424(text: str, peer: str) -> str:
    # VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]
    parts = text.split(" ", 6)
    if len(parts) < 7:
        parts += ["-"] * (7 - len(parts))
    _version, stamp, host, app, procid, _msgid, rest = parts
    message = rest[_structured_data_end(rest) :].lstrip(" ").lstrip("\ufeff")
    if stamp == "-":
        stamp = datetime.now(UTC).isoformat()
    host = peer if host == "-" else host
    pid = f"[{procid}]" if procid != "-" else ""
    return f"{stamp} {host} {app}{pid}: {message}"


@dataclass
class ReceiverStats:
    received: int = 0
    dropped: int = 0  # oldest messages dropped because the queue was full
    too_long: int = 0  # octet-counted frames over MAX_MESSAGE, skipped
    indexed: int = 0


class SyslogReceiver:
    """Listen on `host` (UDP and/or TCP, port 0 for any free port) and index what arrives as
    source `name`. Use `await start()` and `await stop()`, or `async with`."""

    def __init__(
        self,
        db_path: str,
        name: str,
        host: str = "127.0.0.1",
        port: int = 5514,
        protocols: tuple[str, ...] = ("udp", "tcp"),
        queue_size: int = 100_000,
        batch_lines: int = 2000,
        flush_seconds: float = 1.0,
        max_connections: int = 256,
    ):
        self.db_path, self.name, self.host, self.port = db_path, name, host, port
        self.protocols = tuple(protocols)
        self.batch_lines, self.flush_seconds, self.max_connections = batch_lines, flush_seconds, max_connections
        self.queue: collections.deque[str] = collections.deque(maxlen=queue_size)
        self.stats = ReceiverStats()
        self.ingest_stats = IngestStats()
        self.udp_port: int | None = None
        self.tcp_port: int | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    # --- the network side -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        store = Store(self.db_path)  # opened here first, so a bad index fails before we listen
        store.close()
        try:
            if "udp" in self.protocols:
                self._transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(self), local_addr=(self.host, self.port)
                )
                self.udp_port = self._transport.get_extra_info("sockname")[1]
            if "tcp" in self.protocols:
                self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_MESSAGE + 64)
                self.tcp_port = self._server.sockets[0].getsockname()[1]
        except OSError as error:
            await self.stop()
            raise OSError(
                f"syslog source {self.name}: cannot listen on {self.host}:{self.port} ({error.strerror or error})"
            ) from None
        self._writer = threading.Thread(target=self._write_loop, name=f"syslog-{self.name}", daemon=True)
        self._writer.start()
        log.info(
            "syslog source %s: listening on %s, udp %s, tcp %s", self.name, self.host, self.udp_port, self.tcp_port
        )

    async def stop(self) -> None:
        """Stop listening, then index what is still queued."""
        if self._transport is not None:
            self._transport.close()
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        self._stopping.set()
        self._wake.set()
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join, 60)
        if self._writer_error is not None:
            raise self._writer_error

    async def __aenter__(self) -> SyslogReceiver:
        await self.start()
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.stop()

    def put(self, data: bytes, peer: str) -> None:
        line = normalise_message(data, peer)
        if line is None:
            return
        with self._lock:
            if len(self.queue) == self.queue.maxlen:
                self.stats.dropped += 1  # the deque drops its oldest on append
            self.queue.append(line)
            self.stats.received += 1
            ready = len(self.queue) >= self.batch_lines
        if ready:
            self._wake.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        if len(self._connections) >= self.max_connections:
            log.warning("syslog source %s: refused %s: %d connections already", self.name, peer, self.max_connections)
            writer.close()
            return
        self._connections.add(task)
        try:
            while True:
                message = await self._frame(reader)
                if message is None:
                    break
                self.put(message, peer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the sender went away, or broke the framing: drop the connection, keep the rest
        finally:
            self._connections.discard(task)
            writer.close()

    async def _frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next message of a TCP stream (None at its end): RFC 6587 octet counting when the
        frame starts with a digit ('LEN SP MSG'), else one line."""
        first = await reader.read(1)
        if not first:
            return None
        if first.isdigit():
            digits = first + await reader.readuntil(b" ")
            length = int(digits[:-1]) if digits[:-1].isdigit() and len(digits) <= 10 else -1
            if length < 0:
                raise ConnectionError("bad octet count")
            if length > MAX_MESSAGE:
                self.stats.too_long += 1
                await _discard(reader, length)
                return b""
            return await reader.readexactly(length)
        try:
            return first + await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            self.stats.too_long += 1
            await _discard_line(reader)
            return b""
        except asyncio.IncompleteReadError as error:  # the sender closed after a last line with no newline
            return first + error.partial

    # --- the writer thread ------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            store = Store(self.db_path, patience=None)  # a database that went away is waited for; the queue buffers
            key = f"syslog:{self.name}"
            saved = store.position(key)
            count = saved.lines if saved else 0
            while True:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
                while True:
                    with self._lock:
                        batch = [self.queue.popleft() for _ in range(min(self.batch_lines, len(self.queue)))]
                    if not batch:
                        break
                    parsed = parse_chunk(batch, count + 1)
                    count += len(batch)
                    write_parsed(store, self.name, parsed, Position(key, 0, count, count), self.ingest_stats)
                    self.stats.indexed += len(batch)
                if self._stopping.is_set():
                    return
        except BaseException as error:  # told by stop(); the receiver must not die silently
            log.error("syslog source %s: cannot write the index: %s", self.name, error)
            self._writer_error = error


async def _discard(reader: asyncio.StreamReader, count: int) -> None:
    while count > 0:
        data = await reader.read(min(count, 1 << 16))
        if not data:
            return
        count -= len(data)


async def _discard_line(reader: asyncio.StreamReader) -> None:
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as error:
            await reader.readexactly(error.consumed)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver):
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr) -> None:
        self.receiver.put(data, addr[0])


async def run_receiver(receiver: SyslogReceiver, stop: asyncio.Event) -> ReceiverStats:
    """Receive until `stop`, then index what is queued. Drops are reported once a minute."""
    await receiver.start()
    reported = 0
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 60)
            except TimeoutError:
                pass
            if receiver.stats.dropped > reported:
                log.warning(
                    "syslog source %s: %d messages dropped under load (queue of %d full)",
                    receiver.name,
                    receiver.stats.dropped - reported,
                    receiver.queue.maxlen,
                )
                reported = receiver.stats.dropped
            if receiver._writer_error is not None:
                break
    finally:
        await receiver.stop()
    return receiver.stats
