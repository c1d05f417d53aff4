"""Markdown table of sparse_ops_bench.py results: latency relative to dense, per pattern and level.

python benchmarks/sparse_table.py benchmarks/results/sparse_ort_cpu.json benchmarks/results/sparse_cuda.json
"""

from __future__ import annotations

import json
import statistics
import sys


def main() -> None:
    columns, cases = [], []
    for path in sys.argv[1:]:
        result = json.load(open(path))
        for batch in sorted({r["batch"] for r in result["rows"]}):
            rows = [r for r in result["rows"] if r["batch"] == batch]
            name = "ORT CPU 1 thread" if result["backend"] == "ort" else "H100 torch bf16"
            columns.append((f"{name}, batch {batch}", rows, "ms"))
            if any("semi_structured_ms" in r for r in rows):
                columns.append((f"H100 2:4 semi-structured, batch {batch}", rows, "semi_structured_ms"))
            for r in rows:
                if (r["pattern"], r["level"]) not in cases:
                    cases.append((r["pattern"], r["level"]))
    print("| pattern | level | " + " | ".join(c[0] for c in columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for pattern, level in cases:
        cells = []
        for _, rows, key in columns:
            ratios = []
            for r in rows:
                if (r["pattern"], r["level"]) == (pattern, level) and key in r:
                    base = next(
                        b
                        for b in rows
                        if b["pattern"] == "dense (baseline)"
                        and (b["dim"], b["tokens"]) == (r["dim"], r["tokens"])
                    )
                    ratios.append(r[key] / base["ms"])
            cells.append(
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "–"
            )
        print(f"| {pattern} | {level:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
