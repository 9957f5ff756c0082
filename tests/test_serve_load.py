"""A light load run of the real web process: 40 signed Slack requests at once (pasted logs,
/whyfailed ADDRESS, button clicks and Slack's retries). Every one is answered 200, every reply
arrives once, and a retry yields no reply. No timing is asserted here: the numbers are the
benchmark's job (benchmarks/bench_slack_load.py)."""

from __future__ import annotations

import pytest

from .slack_fakes import FakeSlackAPI, SlackSender
from .slack_load import build_requests, count_replies, fire
from .test_serve import BOT_TOKEN, LOG, SECRET, _web


@pytest.mark.slow
def test_forty_concurrent_requests_are_all_answered_once(tmp_path):
    api = FakeSlackAPI(BOT_TOKEN)
    process, port = _web(tmp_path, api)
    try:
        sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SECRET, api)
        requests = build_requests(sender, api, LOG.read_text(), 40)
        assert {r.kind for r in requests} == {"event", "command", "interactive", "retry"}
        result = fire(requests, api, wait_replies=120)
        assert result.statuses == {200: 40}
        assert not result.missing, f"no reply for {sorted(result.missing)}"
        process.terminate()  # drains whatever is still in flight, so a late duplicate would show
        assert process.wait() == 0, process.stderr()
        final = count_replies(api)
        assert set(final) == result.expected
        assert all(n == 1 for n in final.values()), {k: n for k, n in final.items() if n > 1}
    finally:
        process.kill()
        api.close()
