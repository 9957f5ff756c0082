import sys


def run() -> None:
    """`python -m bot` and the `whyfailed` script: bot.cli's commands, with one head start."""
    from bot.why import start_early

    # `why ADDRESS --log FILE`: grep starts reading the log now, while the command line and
    # the parsers are imported (about a fifth of a second); the command takes what it found
    start_early(sys.argv[1:])
    from bot.cli import main

    main()


if __name__ == "__main__":
    run()
