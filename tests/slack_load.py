"""Many signed Slack requests at once against a running web process, and the accounting of what
came back: acks, replies at the local Slack Web API, duplicates. Used by tests/test_serve_load.py
(a light run, no timing asserted) and benchmarks/bench_slack_load.py (the 200-request run)."""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .slack_fakes import FakeSlackAPI, SlackSender, block_action, message_event, slackify

ACK_LIMIT = 3.0  # seconds: Slack's own limit for the HTTP answer


@dataclass
class Request:
    kind: str  # event | command | interactive | retry
    key: str | None  # the reply it must produce, or None for a retry (which must produce none)
    send: object  # a callable returning (status, body)


@dataclass
class LoadResult:
    sent: int
    statuses: collections.Counter
    latencies: list[float]
    late: int  # answered, but after Slack's 3 s
    replies: collections.Counter  # reply key -> how many arrived
    expected: set[str]
    seconds_to_all_replies: float | None
    by_kind: collections.Counter = field(default_factory=collections.Counter)

    @property
    def missing(self) -> set[str]:
        return self.expected - set(self.replies)

    @property
    def duplicates(self) -> dict[str, int]:
        return {key: n for key, n in self.replies.items() if n > 1}

    @property
    def unexpected(self) -> set[str]:
        return set(self.replies) - self.expected

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def build_requests(sender: SlackSender, api: FakeSlackAPI, log_text: str, count: int) -> list[Request]:
    """A mix shaped like a busy workspace: 45% pasted logs, 30% /whyfailed ADDRESS, 15% button
    clicks, 10% Slack retries of events in the same batch (http_timeout and connection_failed)."""
    retries = count // 10
    events, commands = count * 45 // 100, count * 30 // 100
    clicks = count - retries - events - commands
    paste = slackify(log_text)
    requests: list[Request] = []
    bodies = []
    for n in range(events):
        ts = f"1700100{n:03d}.000100"
        body = sender.event_body(message_event(paste, ts), f"Ev0LOAD{n:05d}")
        bodies.append(body)
        requests.append(Request("event", f"event:{ts}", lambda b=body: sender.post(b, "application/json")))
    for n in range(commands):
        name = f"load-{n}"
        requests.append(
            Request("command", f"command:{name}", lambda m=name: sender.command("ops@slow.example.net", name=m))
        )
    for n in range(clicks):
        ts = f"1700200{n:03d}.000100"
        payload = block_action("feedback_helpful", "mailbox-full|tok:0", ts, api)
        requests.append(Request("interactive", f"interactive:{ts}", lambda p=payload: sender.interactive(p)))
    for n in range(retries):
        reason = "http_timeout" if n % 2 else "connection_failed"
        headers = {"X-Slack-Retry-Num": str(1 + n % 3), "X-Slack-Retry-Reason": reason}
        body = bodies[n % len(bodies)]
        requests.append(Request("retry", None, lambda b=body, h=headers: sender.post(b, "application/json", h)))
    return requests


def reply_key(call) -> str | None:
    if call.method == "chat.postMessage":
        return f"event:{call.args.get('thread_ts')}"
    if call.method == "response":
        return f"command:{call.path.rsplit('/', 1)[1]}"
    if call.method == "chat.postEphemeral":
        return f"interactive:{call.args.get('thread_ts')}"
    return None


def count_replies(api: FakeSlackAPI) -> collections.Counter:
    return collections.Counter(key for call in api.made_all() if (key := reply_key(call)))


def fire(requests: list[Request], api: FakeSlackAPI, wait_replies: float = 300.0) -> LoadResult:
    """Send every request at the same moment (one thread each, released together), then wait
    until every expected reply has reached the Web API (or `wait_replies` seconds pass)."""
    expected = {r.key for r in requests if r.key}
    start = threading.Barrier(len(requests) + 1)
    answers: list[tuple[int, float]] = [(0, 0.0)] * len(requests)

    def one(index: int) -> None:
        start.wait()
        began = time.perf_counter()
        try:
            status, _ = requests[index].send()
        except OSError:
            status = 0
        answers[index] = (status, time.perf_counter() - began)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        for index in range(len(requests)):
            pool.submit(one, index)
        start.wait()
        began = time.monotonic()
    deadline = began + wait_replies
    done_at = None
    while time.monotonic() < deadline:
        if expected <= set(count_replies(api)):
            done_at = max(c.at for c in api.made_all() if reply_key(c)) - began
            break
        time.sleep(0.05)
    return LoadResult(
        sent=len(requests),
        statuses=collections.Counter(status for status, _ in answers),
        latencies=[seconds for _, seconds in answers],
        late=sum(seconds > ACK_LIMIT for _, seconds in answers),
        replies=count_replies(api),
        expected=expected,
        seconds_to_all_replies=done_at,
        by_kind=collections.Counter(r.kind for r in requests),
    )
