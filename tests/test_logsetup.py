from __future__ import annotations

import io
import json
import logging

from bot.logsetup import JsonFormatter, event


def test_json_lines_carry_structured_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("whyfailed.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    event(logger, "answered", surface="slack", stories=2, ms=41)
    record = json.loads(stream.getvalue())
    assert record["message"] == "answered" and record["level"] == "info"
    assert (record["surface"], record["stories"], record["ms"]) == ("slack", 2, 41)
