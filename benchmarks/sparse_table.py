"""Markdown table of sparse_ops_bench.py results: latency relative to dense, per pattern and level.

python benchmarks/sparse_table.py benchmarks/results/sparse_ort_cpu.json benchmarks/results/sparse_cuda.json
"""

from __future__ import annotations

import json
import statistics
import sys


def size_of(row: dict) -> tuple:
    return (row.get("op", "linear"), row["dim"], row.get("tokens", row.get("side")))


def main() -> None:
    results = [json.load(open(path)) for path in sys.argv[1:]]
    ops = sorted({r.get("op", "linear") for result in results for r in result["rows"]}, reverse=True)
    for op in ops:
        table(op, results)


def table(op: str, results: list[dict]) -> None:
    columns, cases = [], []
    for result in results:
        op_rows = [r for r in result["rows"] if r.get("op", "linear") == op]
        for batch in sorted({r["batch"] for r in op_rows}):
            rows = [r for r in op_rows if r["batch"] == batch]
            name = "ORT CPU 1 thread" if result["backend"] == "ort" else "H100 torch bf16"
            columns.append((f"{name}, batch {batch}", rows, "ms"))
            if any("semi_structured_ms" in r for r in rows):
                columns.append((f"H100 2:4 semi-structured, batch {batch}", rows, "semi_structured_ms"))
            for r in rows:
                if (r["pattern"], r["level"]) not in cases:
                    cases.append((r["pattern"], r["level"]))
    title = "SparseLinear MLP (vit)" if op == "linear" else "SparseConv2d block (hybrid)"
    print(f"\n{title}: latency relative to dense, median (min–max) over the sizes\n")
    print("| pattern | level | " + " | ".join(c[0] for c in columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for pattern, level in cases:
        cells = []
        for _, rows, key in columns:
            ratios = []
            for r in rows:
                if (r["pattern"], r["level"]) == (pattern, level) and key in r:
                    base = next(
                        b for b in rows if b["pattern"] == "dense (baseline)" and size_of(b) == size_of(r)
                    )
                    ratios.append(r[key] / base["ms"])
            cells.append(
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "–"
            )
        print(f"| {pattern} | {level:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
