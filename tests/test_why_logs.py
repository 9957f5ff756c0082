"""`why --log` without an index: the stories and line numbers a scan of the file gives, whatever
the file's line ends and wherever in it the address and its queue id lie."""

from __future__ import annotations

import gzip

import pytest

from bot.why import normalise_address, why_from_logs

from .conftest import FIXTURES

LINES = (FIXTURES / "postfix" / "deferred-then-bounced.log").read_text().splitlines()
ADDRESS = "ops@slow.example.net"


def _story(path):
    (story,) = why_from_logs([str(path)], ADDRESS, None).deliveries
    return story


def _evidence_lines(story, lines: list[str]) -> list[int]:
    """The evidence's line numbers, each checked to point at that very line of the file."""
    for evidence in story.evidence():
        assert lines[evidence.line - 1].rstrip("\r") == evidence.text
    return [e.line for e in story.evidence()]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_a_crlf_log_without_a_final_newline_tells_the_same_story(tmp_path, suffix):
    lf = tmp_path / "lf.log"
    lf.write_text("\n".join(LINES) + "\n")
    crlf = tmp_path / f"crlf.log{suffix}"
    data = "\r\n".join(LINES).encode()  # and no line end after the last line
    crlf.write_bytes(gzip.compress(data) if suffix else data)
    expected, story = _story(lf), _story(crlf)
    assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"]
    assert [(e.line, e.text) for e in story.evidence()] == [(e.line, e.text) for e in expected.evidence()]
    assert [e.line for e in story.evidence()] == [1, 2, 3, 5, 7, 8, 9, 10]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("ending", ["\n", ""], ids=["final-newline", "no-final-newline"])
def test_the_address_on_the_first_and_the_last_line(tmp_path, suffix, ending):
    # the first deferral opens the file and the bounce closes it; the message's other lines,
    # found by its queue id, lie between them and are numbered as the file has them
    first, last = LINES[4], LINES[7]
    lines = [first, *(line for line in LINES if line not in (first, last)), last]
    path = tmp_path / f"mail.log{suffix}"
    data = ("\n".join(lines) + ending).encode()
    path.write_bytes(gzip.compress(data) if suffix else data)
    story = _story(path)
    assert [a.status for a in story.attempts] == ["deferred", "deferred", "bounced"]
    # the message's lines but the connect (line 5) and carl's delivery (line 6); the bounce is last
    assert sorted(_evidence_lines(story, lines)) == [1, 2, 3, 4, 7, 8, 9, 10]
    assert story.final.evidence[-1].line == len(lines)


def test_a_longer_id_holding_the_queue_id_does_not_change_the_story(tmp_path):
    # another message whose queue id ends with this one's: found by the id search (a substring
    # match, like grep), but its lines are not this message's
    other = [line.replace("7A1B2C3D4E", "FF7A1B2C3D4E").replace(ADDRESS, "else@where.example") for line in LINES]
    lines = other[:3] + LINES + other[3:]
    path = tmp_path / "mail.log"
    path.write_text("\n".join(lines) + "\n")
    story = _story(path)
    assert story.queue_id == "7A1B2C3D4E"
    assert _evidence_lines(story, lines) == [n + 3 for n in (1, 2, 3, 5, 7, 8, 9, 10)]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    ("address", "asked"),
    [
        (ADDRESS, "ops@slow.example.net"),  # a short caseless anchor ('@'): the regex search
        ("ops1625@slow.example.net", "OPS1625@slow.example.NET"),  # a long one ('1625@'): mmap.find
    ],
)
def test_the_address_is_found_whatever_its_case_in_the_log(tmp_path, suffix, address, asked):
    # each of the message's lines writes the address another way; asked in yet another case, the
    # story is the one the lower-case log tells
    def alternate(text: str) -> str:
        return "".join(c.upper() if n % 2 else c for n, c in enumerate(text))

    def domain_upper(text: str) -> str:
        local, domain = text.split("@")
        return f"{local}@{domain.upper()}"

    spellings = [str.title, str.upper, domain_upper, alternate]  # Ops@Slow.Example.Net, OPS@SLOW..., ...
    lower = [line.replace(ADDRESS, address) for line in LINES]
    varied = [line.replace(ADDRESS, spellings[n % len(spellings)](address)) for n, line in enumerate(LINES)]
    assert varied != lower and [line.lower() for line in varied] == [line.lower() for line in lower]
    stories = []
    for name, lines in (("lower", lower), ("varied", varied)):
        path = tmp_path / f"{name}.log{suffix}"
        data = ("\n".join(lines) + "\n").encode()
        path.write_bytes(gzip.compress(data) if suffix else data)
        (story,) = why_from_logs([str(path)], normalise_address(asked), None).deliveries
        stories.append(story)
    assert [a.status for a in stories[1].attempts] == ["deferred", "deferred", "bounced"]
    assert [e.line for e in stories[1].evidence()] == [e.line for e in stories[0].evidence()]
    assert [e.line for e in stories[1].evidence()] == [1, 2, 3, 5, 7, 8, 9, 10]


# --- each line parsed once -------------------------------------------------------------------


def _busy_log(tmp_path):
    from .conftest import write_mix_log

    return write_mix_log(tmp_path / "mail.log", 8000, seed=31)


def _read_twice(path, address):
    """What why --log read before: the address's lines parsed for their queue ids, then all the
    lines (the address's and the messages') parsed together, renumbered as in the file."""
    from bot.parse import parse_lines
    from bot.sources.scan import open_log

    with open_log(path) as log:
        hits = log.grep([address.encode()], ignore_case=True)
        ids = {e.session for e in parse_lines([line for _, line in hits]).events if e.session}
        lines = sorted({*hits, *log.grep([i.encode() for i in sorted(ids)])}) if ids else hits
    events = parse_lines([line for _, line in lines]).events
    return [(lines[e.line - 1][0], e.raw, e.kind, e.session, e.recipient, e.status, e.text) for e in events]


def _shape(events):
    return [(e.line, e.raw, e.kind, e.session, e.recipient, e.status, e.text) for e in events]


@pytest.mark.parametrize("grep", [True, False])
def test_each_line_is_parsed_once_and_the_events_are_those_of_parsing_all_together(tmp_path, grep):
    from bot.sources.grep import scan_for
    from bot.why import MAX_MATCHED_LINES, _events_of

    log = _busy_log(tmp_path)
    text = log.read_text()
    deferred = text.split("status=deferred", 1)[0].rsplit(" to=<", 1)[1].split(">")[0]
    rejected = text.split("NOQUEUE: reject: RCPT from ", 1)[1].split(" to=<", 1)[1].split(">")[0]
    queue_id = text.split("status=sent", 1)[0].rsplit("]: ", 1)[1].split(":")[0]
    for target in (deferred, rejected, "@" + deferred.split("@")[1], "@example.com", queue_id, "nobody@absent.example"):
        scan = scan_for(log, target, MAX_MATCHED_LINES) if grep else None
        try:
            assert _shape(_events_of(log, target, scan)) == _read_twice(log, target), target
        finally:
            if scan is not None:
                scan.close()


def test_the_lines_kept_past_the_limit_are_the_first_ones_in_the_file(tmp_path, monkeypatch):
    import bot.why
    from bot.why import _parsed, _with_more

    lines = _busy_log(tmp_path).read_text().splitlines()
    hits = [(n, lines[n - 1]) for n in (3, 40, 41, 90)]
    more = [(n, lines[n - 1]) for n in (2, 40, 50, 60, 95)]
    monkeypatch.setattr(bot.why, "MAX_MATCHED_LINES", 5)
    kept = _with_more(hits, _parsed(hits), more)
    assert sorted({e.line for e in kept}) == [2, 3, 40, 41, 50]
    assert _shape(kept) == _shape(_parsed([(n, lines[n - 1]) for n in (2, 3, 40, 41, 50)]))
