"""The `whyfailed` command line. Each command maps to one documented function of the core."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console

from bot import __version__
from bot.textio import MAX_INPUT_BYTES, InputError, read_input

FORMATS = ("text", "markdown", "json", "jsonl")
EXIT_OK, EXIT_USAGE = 0, 2


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="whyfailed")
def main() -> None:
    """Tell why an email was not delivered, from a mail log or a bounce message."""


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATH ...|-]")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people; markdown for tickets; json/jsonl for programs.",
)
@click.option("--verbose", "-v", is_flag=True, help="Show every evidence line and every line not understood.")
@click.option("--stats", is_flag=True, help="Also print, per format, the lines parsed, relevant and not understood.")
@click.option(
    "--max-bytes",
    type=click.IntRange(1024),
    default=MAX_INPUT_BYTES,
    show_default=True,
    help="Read at most this much of each input.",
)
def diagnose(paths: tuple[str, ...], fmt: str, verbose: bool, stats: bool, max_bytes: int) -> None:
    """Diagnose each PATH (a mail log excerpt, an SMTP transcript or a bounce message).

    Reads standard input when PATH is '-' or missing. Exit status: 0 when the input was
    read, whatever it diagnosed; 2 for bad usage or input that cannot be read.
    """
    from bot.report import diagnose_text

    if not paths:
        if sys.stdin.isatty():
            raise click.UsageError("give a file to diagnose, or pipe a log into `whyfailed diagnose -`.")
        paths = ("-",)
    errors = 0
    reports = []
    for path in paths:
        try:
            source = read_input(path, max_bytes)
        except InputError as error:
            _stderr().print(f"[red]error:[/red] {error}", markup=True)
            errors += 1
            continue
        with _progress(len(source.text), source.name):
            report = diagnose_text(source.text, source.name, source.notes)
        reports.append(report)
        _emit(report, fmt, verbose, stats, several=len(paths) > 1)
    if fmt == "json" and len(paths) > 1:
        from bot.render.json import report_to_dict

        click.echo(json.dumps([report_to_dict(r) for r in reports], indent=2, ensure_ascii=False))
    sys.exit(EXIT_USAGE if errors else EXIT_OK)


class _progress:
    """A spinner on stderr while a large input is diagnosed, when a person is watching."""

    def __init__(self, size: int, name: str):
        self.status = None
        if size > 1_000_000 and sys.stderr.isatty():
            self.status = _stderr().status(f"Diagnosing {name} ({size // 1_000_000} MB)…")

    def __enter__(self):
        if self.status:
            self.status.__enter__()

    def __exit__(self, *exc):
        if self.status:
            self.status.__exit__(*exc)


def _emit(report, fmt: str, verbose: bool, stats: bool, several: bool) -> None:
    if fmt == "json":
        if not several:
            from bot.render.json import render_json

            click.echo(render_json(report))
        return
    if fmt == "jsonl":
        from bot.render.json import report_to_dict

        click.echo(json.dumps(report_to_dict(report), ensure_ascii=False))
        return
    if fmt == "markdown":
        from bot.render.markdown import render_markdown

        click.echo(render_markdown(report))
    else:
        from bot.render.text import print_report

        console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
        if several:
            console.rule(report.input)
        print_report(report, console, verbose=verbose)
    if stats:
        _print_stats(report)


def _print_stats(report) -> None:
    from rich.table import Table

    table = Table(title=f"Coverage: {report.input}")
    for column in ("format", "parsed", "relevant", "unparsed"):
        table.add_column(column, justify="left" if column == "format" else "right")
    for name, counts in sorted(report.format_stats.items()):
        table.add_row(name, *(str(counts.get(k, 0)) for k in ("parsed", "relevant", "unparsed")))
    Console(highlight=False).print(table)


@main.command()
@click.argument("query", required=False)
@click.option(
    "--format", "-f", "fmt", type=click.Choice(("text", "markdown", "json")), default="text", show_default=True
)
def kb(query: str | None, fmt: str) -> None:
    """List the knowledge base, or show the article whose id or title matches QUERY."""
    from bot.knowledge import load_articles

    articles = load_articles()
    if query is None:
        rows = [(a.id, a.title) for a in articles.values()]
        if fmt == "json":
            click.echo(json.dumps([{"id": i, "title": t} for i, t in rows], indent=2))
        else:
            for article_id, title in rows:
                click.echo(f"{article_id:<24} {title}")
        return
    wanted = query.lower()
    found = articles.get(wanted) or next(
        (a for a in articles.values() if wanted in a.title.lower() or wanted in a.id), None
    )
    if found is None:
        _stderr().print(f"No article matches '{query}'. Run `whyfailed kb` for the list.", markup=False)
        sys.exit(EXIT_USAGE)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "id": found.id,
                    "title": found.title,
                    "severity": found.severity,
                    "who_acts": found.who_acts,
                    "next_steps": found.next_steps(),
                    "body": found.body,
                },
                indent=2,
            )
        )
    elif fmt == "markdown":
        click.echo(f"# {found.title}\n\n{found.body}")
    else:
        from rich.markdown import Markdown

        Console().print(Markdown(f"# {found.title}\n\n{found.body}"))


if __name__ == "__main__":
    main()
