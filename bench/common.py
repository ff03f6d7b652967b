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


def write_results(path, record: dict, **machine) -> None:
    """Write a benchmark's figures as JSON to ``path`` (``bench/results/<name>.json``), with
    the date (UTC) and the machine (Python, system, CPUs, plus ``machine`` extras such as the
    torch version), and say where."""
    import datetime
    import json
    import os
    import platform
    from pathlib import Path

    path = Path(path)
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "system": platform.platform(),
                    "cpus": os.cpu_count(), **machine},
        **record,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"figures written to {path.relative_to(Path(__file__).resolve().parents[1])}")
