"""What the benchmark scripts share. They run as ``python bench/<name>.py``, so this folder
is on ``sys.path`` and ``from common import …`` works."""

from __future__ import annotations

import re


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table: numbers right-aligned, text left-aligned."""

    def numeric(col: int) -> bool:
        return all(re.fullmatch(r"[-0-9.]+", str(r[col])) for r in rows)

    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(("{:>%d}" if numeric(i) else "{:<%d}") % w for i, w in enumerate(widths))
    line = "  ".join("-" * w for w in widths)
    out = [fmt.format(*header), line, *(fmt.format(*map(str, r)) for r in rows)]
    return "\n".join(x.rstrip() for x in out)
