"""whyfailed: tells you why an email was not delivered."""

__version__ = "0.1.0"
