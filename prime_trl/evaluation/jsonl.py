"""Records as JSON lines: the samples files that `prime-trl eval`, `rerank` and `visualize` write and read."""

from __future__ import annotations

import json
from collections.abc import Sequence


def write_jsonl(path: str, records: Sequence[dict]) -> None:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
