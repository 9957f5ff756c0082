"""Ingest pauses the cyclic garbage collector while a chunk is parsed and written
(bot/ingest.py, cycles_collected_after). That is only free if the pipeline makes no reference
cycles, which would otherwise pile up until the chunk is done: held here on every fixture and
on a realistic generated log, Lark's failures on lines it cannot read included."""

from __future__ import annotations

import gc
import sys

import pytest

from bot.ingest import cycles_collected_after, parse_block

from .conftest import FIXTURES, REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from generate_postfix_log import generate_mix  # noqa: E402

LOGS = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix not in (".json", ".yaml", ".toml"))


def _cyclic_garbage_of(data: bytes) -> int:
    gc.collect()
    with cycles_collected_after():
        parse_block(data, 1, True, "s")
        parse_block(data, 1, False, "s")  # without the prefilter: every line through the parsers
        return gc.collect()  # what only the collector could have freed


@pytest.mark.parametrize("path", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_parsing_a_fixture_makes_no_reference_cycles(path):
    data = path.read_bytes()
    assert _cyclic_garbage_of(data if data.endswith(b"\n") else data + b"\n") == 0


def test_parsing_a_busy_log_makes_no_reference_cycles():
    data = ("\n".join(generate_mix(6000, seed=12)) + "\n").encode()
    assert _cyclic_garbage_of(data) == 0


def test_a_cycle_made_while_paused_is_collected_after_and_the_collector_is_back_on():
    assert gc.isenabled()

    class Node:
        pass

    with pytest.raises(RuntimeError), cycles_collected_after():
        assert not gc.isenabled()
        node = Node()
        node.self = node
        del node
        raise RuntimeError("a chunk that failed")
    assert gc.isenabled()
    assert gc.collect() >= 1  # the cycle was left for the collector, which takes it now
    gc.disable()
    try:
        with cycles_collected_after():
            pass
        assert not gc.isenabled()  # a collector someone else turned off stays off
    finally:
        gc.enable()
