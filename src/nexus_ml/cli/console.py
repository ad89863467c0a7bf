"""Every console the CLI prints on: text goes out literally, styles are applied explicitly.

Rich parses ``[...]`` in printed strings as markup by default: it ate ``[a-z]`` out of
"must match ^[a-z][a-z0-9_]{0,63}$" and raised MarkupError on a column named ``a[/]b``. The
texts we print carry user data (column and feature names, paths, error messages), so markup,
highlighting and emoji codes are off on every console made here, and a style is given as a
style (``problem``), never written inside the text. Commands build their consoles, tables'
consoles and progress bars only through this module.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


def make_console(*, stderr: bool = False) -> Console:
    """A console that prints every string literally (no markup, highlighting or emoji)."""
    return Console(stderr=stderr, markup=False, highlight=False, emoji=False)


def problem(label: str, detail: object = None, *, style: str = "red") -> Text:
    """``label`` in ``style``, then ``detail`` as plain text: "cannot train: <why>"."""
    text = Text()
    text.append(label, style=style)
    if detail is not None:
        text.append(f" {detail}")
    return text


def progress_bar(console: Console) -> Progress:
    """A progress bar whose task descriptions are printed literally."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
