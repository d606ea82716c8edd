"""The text table that `prime-trl eval` and `prime-trl rerank` print."""

from __future__ import annotations


def format_table(table: dict[str, dict[str, float]], title: str | None = None) -> str:
    """A fixed-width text table: one row per data source, one column per metric."""
    if not table:
        return "(no problems)"
    columns = list(next(iter(table.values())))
    width = max(12, *(len(s) for s in table))
    header = f"{'data_source':<{width}} " + " ".join(f"{c:>12}" for c in columns)
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for source, row in table.items():
        cells = [f"{row[c]:>12d}" if isinstance(row[c], int) else f"{row[c]:>12.4f}" for c in columns]
        lines.append(f"{source:<{width}} " + " ".join(cells))
    return "\n".join(lines)
