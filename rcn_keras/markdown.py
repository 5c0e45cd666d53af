"""The one Markdown table writer: rows of dicts, columns of (key, header, format)."""

from __future__ import annotations

from typing import Sequence

Column = tuple[str, str, str]


def markdown_table(rows: Sequence[dict], columns: Sequence[Column | str], title: str | None = None) -> str:
    """A Markdown table of ``rows``; each column is ``(key, header, format spec)`` or a bare key
    (header = key, ``str()``). Missing or ``None`` values are left blank."""
    cols = [(c, c, "") if isinstance(c, str) else c for c in columns]
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for key, _, fmt in cols:
            value = row.get(key)
            cells.append("" if value is None else format(value, fmt) if fmt else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
