"""Rendering ``rich`` tables as plain text (reports' ``__str__``)."""

from __future__ import annotations


class _NullFile:
    def write(self, _):
        return 0

    def flush(self):
        pass


def render(table, width: int = 120) -> str:
    """``table`` (any ``rich`` renderable) as text, ``width`` columns wide."""
    from rich.console import Console

    console = Console(width=width, record=True, file=_NullFile())
    console.print(table)
    return console.export_text()
