"""One section of docs/results.md: the record `reporting.sections` lists, one per CSV."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A section of docs/results.md: a heading, the setup in words, the table of one CSV, then its figures.

    `about` holds no measured number (those come from the table); `notes`, when given, reads the rows and
    may quote numbers, since it computes them."""

    group: str
    title: str
    csv: str
    about: str
    figures: tuple[str, ...] = ()
    notes: Callable[[list[dict[str, str]]], str] | None = None
    table: Callable[[list[dict[str, str]]], str] | None = (
        None  # default: chosen by the CSV's columns (`table`)
    )
