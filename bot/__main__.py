import gc
import sys


def run() -> None:
    """`python -m bot` and the `whyfailed` script: bot.cli's commands, with one head start."""
    if sys.argv[1:2] == ["why"]:
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
    from bot.cli import main

    try:
        main()
    finally:
        if sys.argv[1:2] == ["why"]:
            # The answer is written. Python's exit would look at every object once more for
            # garbage cycles (0.06 s of a 0.3 s `why --log`); frozen, they are let go as the
            # process ends. Kept to `why`: a longer command's cycles may hold work to finish.
            gc.freeze()


if __name__ == "__main__":
    run()
