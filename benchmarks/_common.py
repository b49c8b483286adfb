"""Shared by the benchmark scripts: write a result as JSON (atomically) and print it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medimp._io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` and print the result as an aligned key/value table."""
    out = RESULTS / f"{name}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    print(f"-> {out}")
    return out
