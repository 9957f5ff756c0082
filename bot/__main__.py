import gc
import os
import sys


def run() -> None:
    """`python -m bot` and the `whyfailed` script: bot.cli's commands, with one head start."""
    why = sys.argv[1:2] == ["why"]
    if why:
        # `why` is short, its input bounded (MAX_MATCHED_LINES), and its work makes no reference
        # cycles (but a fixed few in json's encoder; tests/test_why_gc.py): the cyclic collector
        # would only walk, again and again, the objects that importing the parsers and reading
        # the lines leave alive. Off, a ten-line answer comes about 10 ms sooner, a 200,000-line
        # @domain 20% sooner, with the same peak memory.
        gc.disable()
    from bot import early

    # `why ADDRESS --log FILE`: grep starts reading the log now, while the command line and
    # the parsers are imported (about a fifth of a second); the command takes what it found
    early.start(sys.argv[1:])
    if early.started():
        from bot.sources.grep import adopt_early

        adopt_early()  # each search's reader thread, before the imports that follow
    # `why ADDRESS --log FILE --format json`, what scripts ask: answered as click would answer
    # it, without importing click (about 0.02 s of the 0.17 s the command takes)
    quick = early.quick_json(sys.argv[1:]) if _utf8(sys.stdout) else None
    try:
        if quick is not None:
            _as_click_ends(_print_json_from_logs, *quick)
        else:
            from bot.cli import main

            main()
    finally:
        if why:
            # The answer is written. Python's exit would look at every object once more for
            # garbage cycles (0.06 s of a 0.3 s `why --log`); frozen, they are let go as the
            # process ends. Kept to `why`: a longer command's cycles may hold work to finish.
            gc.freeze()


def _print_json_from_logs(address: str, logs: list[str]) -> None:
    """`why ADDRESS --log PATH... --format json` (bot.early.quick_json), printed as the click
    command prints it (bot.cli.why, then _emit: click.echo of render_json, which writes the text
    and a newline to a UTF-8 stdout as it is)."""
    from bot.early import WHY_LIMIT
    from bot.render.json import render_json
    from bot.why import labelled, why_from_logs

    report = labelled(why_from_logs(logs, address, None, WHY_LIMIT), address)
    sys.stdout.write(render_json(report) + "\n")
    sys.stdout.flush()


def _utf8(stream) -> bool:
    """Whether click.echo would write to STREAM as it is: a UTF-8 text stream (an ASCII one it
    wraps first; see click's _force_correct_text_writer)."""
    return (getattr(stream, "encoding", None) or "").lower().replace("_", "-") in ("utf-8", "utf8")


def _as_click_ends(work, *args) -> None:
    """WORK(*ARGS), ending as a click command's standalone main ends on the same events: when
    the reader went away (a closed pipe) with status 1 and no traceback, and on Ctrl-C with
    "Aborted!" and status 1."""
    try:
        work(*args)
    except KeyboardInterrupt:
        sys.stderr.write("\nAborted!\n")
        sys.exit(1)
    except BrokenPipeError:
        # click swaps stdout for a wrapper whose flush ignores the broken pipe; here the
        # descriptor goes to /dev/null, so the interpreter's last flush has nowhere to fail
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    run()
