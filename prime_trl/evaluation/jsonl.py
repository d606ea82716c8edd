"""The files `prime-trl eval` and `rerank` write (a JSON report and the samples as JSON lines), which `rerank` and
`visualize` read back."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence


def write_jsonl(path: str, records: Sequence[dict]) -> None:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_report(output_dir: str, report_name: str, report: dict, samples_name: str, records: Sequence[dict]) -> str:
    """`<output_dir>/<report_name>` (indented JSON) and `<output_dir>/<samples_name>` (JSON lines); returns the
    report's path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, report_name)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    write_jsonl(os.path.join(output_dir, samples_name), records)
    return path
