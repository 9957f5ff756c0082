"""bot/malloc.py: the C library takes the fixed mmap threshold where it can (glibc), and a
process that set it still frees a large block back to the system."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from bot.malloc import fix_mmap_threshold

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt's M_MMAP_THRESHOLD is glibc's")
def test_glibc_takes_the_threshold():
    assert fix_mmap_threshold() is True


@pytest.mark.skipif(not GLIBC, reason="mallopt's M_MMAP_THRESHOLD is glibc's")
def test_a_freed_chunk_sized_block_leaves_the_process():
    # What the fixed threshold is for: after a 2 MB block has been freed once (which, left to
    # glibc, raises the threshold above 2 MB), the next ones are still mapped and unmapped.
    script = """
import sys
from bot.malloc import fix_mmap_threshold
fix = sys.argv[1] == "fix"
if fix:
    fix_mmap_threshold()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
blocks = [bytearray(2 << 20) for _ in range(2)]
del blocks
small = []
before = rss()
for _ in range(40):  # 2 MB blocks freed at once, with small objects allocated after each
    block = bytearray(2 << 20)
    small.append(bytes(64))
    del block
print(rss() - before)
"""
    grown = {}
    for mode in ("fix", "default"):
        result = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        grown[mode] = int(result.stdout)
    assert grown["fix"] < 1 << 20  # nothing of the 2 MB blocks stays
    assert grown["default"] > grown["fix"]  # where glibc is left to itself, one of them does
