"""`bench/figures.json`: the headline figures of the latest run of each benchmark, merged by benchmark name.

The capacity planner reads this file; its keys are documented in bench/README.md ("figures.json"). Each
entry holds the benchmark's own figures plus `measured_at` (UTC, ISO 8601), `machine` (`nproc`, RAM, load
average at the end of the run) and `command` (the argv it ran with).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parent / "figures.json"


def machine() -> dict[str, Any]:
    """nproc, total RAM (GiB), load average (1 min) and the Python/PostgreSQL-independent platform string."""
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "ram_gib": ram,
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def record(name: str, figures: dict[str, Any]) -> None:
    """Merge `figures` under `name` into bench/figures.json (other benchmarks' entries are kept)."""
    try:
        data = json.loads(PATH.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = {
        **figures,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
    }
    tmp = PATH.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(PATH)
