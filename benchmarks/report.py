"""The one report helper: each table is printed as markdown and kept for results.json."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Cell = str | int | float | bool | None
Row = dict[str, Cell]


class Report:
    """Collects the run's tables, in order, for results.json."""

    def __init__(self) -> None:
        self._sections: dict[str, dict[str, Any]] = {}

    def table(
        self,
        key: str,
        title: str,
        rows: Sequence[Row],
        *,
        notes: Sequence[str] = (),
    ) -> None:
        """Print `rows` under `title` as a markdown table and keep them under `key`."""
        print(markdown_table(title, rows, notes), flush=True)
        self._sections[key] = {
            "title": title,
            "rows": [{column: _rounded(value) for column, value in row.items()} for row in rows],
            "notes": list(notes),
        }

    def write_json(self, path: Path, header: Mapping[str, Any]) -> None:
        """Write `header` (machine, parameters, runtime...) and every table to `path`."""
        document = {**header, "sections": self._sections}
        path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def markdown_table(title: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """`rows` (dicts sharing their keys) as a titled markdown table, notes below it."""
    columns = list(rows[0]) if rows else []
    lines = [f"\n### {title}\n"]
    lines.append("| " + " | ".join(column.replace("_", " ") for column in columns) + " |")
    lines.append("| " + " | ".join("---" for _ in columns) + " |")
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(column)) for column in columns) + " |")
    lines.extend(f"\n{note}" for note in notes)
    return "\n".join(lines)


def _rounded(value: Cell) -> Cell:
    # Four significant digits: the timings are not more precise than that.
    return float(f"{value:.4g}") if isinstance(value, float) else value


def _format(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1000:
            return str(int(value))
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return value
