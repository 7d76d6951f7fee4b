"""Peak memory and time of the importer's command line against ``json.load`` of the same snapshot.

python scripts/bench_import.py --url URL [--runs 20000]

Writes a snapshot of ``--runs`` runs with 10 node states each (the shape
README.md's recipe dumps: graphs with nodes and edges, naive timestamps),
then runs, each in its own process: ``json.load`` of that file alone, and
``python -m workflow_db.importer`` into the (migrated, empty) database at
``--url``. Prints both peaks (maximum resident set size) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_snapshot(path: Path, runs: int) -> None:
    """A service's three dictionaries: 100 graphs of 10 nodes, ``runs`` runs, 10 states each."""
    graphs = {
        f"wf_{g}": {
            "id": f"wf_{g}", "name": f"graph {g}", "description": None,
            "nodes": [{"id": f"n{i}", "label": f"Node {i}", "x": i * 10.0, "y": 5.0} for i in range(10)],
            "edges": [{"id": f"e{i}", "source": f"n{i}", "target": f"n{i + 1}"} for i in range(9)],
        }
        for g in range(100)
    }  # fmt: skip
    run_items = {
        f"run_{r}": {
            "id": f"run_{r}", "workflow_id": f"wf_{r % 100}", "status": "completed",
            "started_at": "2026-01-01 10:00:00.123456", "finished_at": "2026-01-01 11:00:00.123456",
            "last_message": "Run finished.",
        }
        for r in range(runs)
    }  # fmt: skip
    states = {
        run_id: {
            f"n{i}": {"node_id": f"n{i}", "status": "completed", "progress": 1.0,
                      "messages": ["started", "finished"], "error": None,
                      "started_at": "2026-01-01 10:00:00", "completed_at": "2026-01-01 10:30:00"}
            for i in range(10)
        }
        for run_id in run_items
    }  # fmt: skip
    with open(path, "w", encoding="utf-8") as file:
        json.dump({"graphs": graphs, "runs": run_items, "node_states": states}, file)


def peak_of(argv: list[str]) -> tuple[float, float]:
    """Run ``argv``; return its peak resident set size (MiB) and its wall time (s)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:4])} ... failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a migrated, EMPTY database")
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "snapshot.json"
        write_snapshot(path, args.runs)
        size = path.stat().st_size / 1e6
        loaded, _ = peak_of([sys.executable, "-c", f"import json; json.load(open({str(path)!r}))"])
        imported, seconds = peak_of(
            [sys.executable, "-m", "workflow_db.importer", "--url", args.url, str(path)]
        )
    print("| snapshot | json.load peak | import peak | import / json.load | import time |")
    print("|---|---|---|---|---|")
    print(f"| {args.runs:,} runs x 10 node states, {size:.1f} MB | {loaded:.0f} MiB | {imported:.0f} MiB | "
          f"{imported / loaded:.2f} | {seconds:.1f} s |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
