import sys

from bot.why import start_early

# `why ADDRESS --log FILE`: grep starts reading the log now, while the command line and the
# parsers are imported (about a fifth of a second); the command takes what it found
start_early(sys.argv[1:])

from bot.cli import main  # noqa: E402

main()
