"""What does weight sparsity buy? Latency of the spaces' sparse ops per pattern and level,
relative to the dense op of the same size, at the layer sizes the spaces use.

    python -m benchmarks.sparse_ops measure --backend ort --out sparse_ops_ort_cpu.json
    python -m benchmarks.sparse_ops measure --backend cuda --out sparse_ops_cuda.json   # GPU machine
    python -m benchmarks.sparse_ops table sparse_ops_ort_cpu.json sparse_ops_cuda.json

Ops: the SparseLinear MLP of the vit space (fc1 -> ReLU -> fc2) on N tokens, and the
SparseConv2d Fused-MBConv body of the hybrid space (3x3 conv -> ReLU -> 1x1 conv), built by
search_spaces.ops with a dense initialisation's weights put through sparsify_pair.
ort:  ONNX Runtime on the CPU (latency_models' exporter and session), 1 intra-op thread,
      batch of 1 image.
cuda: torch on the GPU (bf16), CUDA-event timing, batch 1 and 64 images; 2:4 linear layers are
      also run on torch's 2:4 semi-structured kernels (torch has none for convolutions).
Each case: median of 100 calls after 30 warm-up calls (latency_models._timing.time_calls) per
round, 7 rounds interleaved across cases, median round. Masked weights stay dense with zeros
(what the exporter ships); structured sparsity removes hidden units / channels, so its op is
physically smaller. ``table`` prints the Markdown tables of BENCHMARKS.md from result files.
"""

from __future__ import annotations

import json
import statistics

import torch
from torch import nn

from benchmarks._harness import argument_parser, write_result
from latency_models._timing import time_calls
from search_spaces.arch import pattern_level
from search_spaces.ops import ConvMlp, Mlp
from search_spaces.sparse import sparsify_pair

# (op, width, hidden, tokens or feature-map side) as the default spaces use them:
# vit: embed_dim 48/64/96 at mlp_ratio 4, 16 tokens (patch 7) or 49 (patch 4);
# hybrid: stage widths at expansion 3, 14x14 (stage 0), 7x7 (stage 1), 4x4 (stage 2).
SIZES = [("linear", d, 4 * d, n) for d in (48, 64, 96) for n in (16, 49)] + [
    ("conv", 16, 48, 14),
    ("conv", 32, 96, 14),
    ("conv", 48, 144, 7),
    ("conv", 64, 192, 4),
]
ROUNDS = 7  # every case is timed once per round, rounds interleaved; the median round counts
CASES = [("dense", 0.0), ("dense", 0.0), ("2:4", 0.5), ("4:8", 0.5)] + [
    (p, level) for p in ("unstructured", "block", "structured") for level in (0.5, 0.75, 0.9)
]
WARMUP, RUNS = 30, 100


def sparse_op(op: str, dim: int, hidden: int, pattern: str, level: float) -> nn.Module:
    """The space's own op (Mlp or ConvMlp) with a dense init's weights under the pattern."""
    torch.manual_seed(0)
    dense = Mlp(dim, hidden, "relu") if op == "linear" else ConvMlp(dim, hidden, "relu", "dense", 0.0)
    w1, b1, w2 = sparsify_pair(dense.fc1.weight, dense.fc1.bias, dense.fc2.weight, pattern, level)
    model = (
        Mlp(dim, hidden, "relu", pattern, level)
        if op == "linear"
        else ConvMlp(dim, hidden, "relu", pattern, level)
    )
    with torch.no_grad():
        model.fc1.weight.copy_(w1), model.fc1.bias.copy_(b1), model.fc2.weight.copy_(w2)
        model.fc2.bias.copy_(dense.fc2.bias)
    return model.eval()


def example(op: str, dim: int, size: int, batch: int) -> tuple[int, ...]:
    return (batch, size, dim) if op == "linear" else (batch, dim, size, size)


def time_ort(model: nn.Module, shape: tuple[int, ...]) -> float:
    """Median ms of one ONNX Runtime call of ``model`` exported as a search exports it."""
    import numpy as np

    from latency_models.onnx_io import to_onnx
    from latency_models.onnxruntime import OnnxRuntimeProfiler

    session = getattr(model, "ort_session", None)
    if session is None:  # one session per model, reused across rounds
        session = model.ort_session = OnnxRuntimeProfiler(threads=1).session(to_onnx(model, shape[1:]))
    feed = {"images": np.random.default_rng(0).random(shape, dtype=np.float32)}
    (samples,) = time_calls(lambda: session.run(None, feed), WARMUP, RUNS)
    return statistics.median(samples)


def time_cuda(fn, x: torch.Tensor) -> float:
    """Median ms of one call of ``fn(x)`` on the GPU, by CUDA events."""

    def call() -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    (samples,) = time_calls(call, WARMUP, RUNS, timed=True)
    return statistics.median(samples)


def semi_structured(model: nn.Module) -> nn.Module | str:
    """The MLP with torch's 2:4 semi-structured weights, or why that is not possible."""
    from torch.sparse import to_sparse_semi_structured

    if isinstance(model, ConvMlp):
        return "torch has no semi-structured convolution kernels"
    try:
        for layer in (model.fc1, model.fc2):
            layer.weight = nn.Parameter(to_sparse_semi_structured(layer.weight), requires_grad=False)
        return model
    except Exception as e:  # shape or dtype the kernels do not support
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def measure_size(backend: str, op: str, dim: int, hidden: int, size: int, batch: int, rounds: int) -> list:
    """Every case at one size, timed in interleaved rounds; ratios to the first dense copy.

    The second dense copy is a control: its ratio shows the noise floor of the comparison.
    """
    timers, rows = [], []
    shape = example(op, dim, size, batch)
    for i, (pattern, level) in enumerate(CASES):
        assert pattern_level(pattern) in (None, level)
        model = sparse_op(op, dim, hidden, pattern, level)
        row = {
            "op": op,
            "dim": dim,
            "hidden": hidden,
            "tokens" if op == "linear" else "side": size,
            "batch": batch,
            "pattern": "dense (baseline)" if i == 0 else pattern,
            "level": level,
            "hidden_kept": model.kept,
        }
        if backend == "ort":
            timers.append({"ms": lambda m=model: time_ort(m, shape)})
        else:
            model = model.cuda().to(torch.bfloat16)
            x = torch.rand(shape, device="cuda", dtype=torch.bfloat16)
            x = x.view(-1, dim) if op == "linear" else x  # (batch * tokens, dim): the kernels' 2-D GEMM
            timer = {"ms": lambda m=model, x=x: time_cuda(m, x)}
            if pattern == "2:4":
                fast = semi_structured(sparse_op(op, dim, hidden, pattern, level).cuda().to(torch.bfloat16))
                if isinstance(fast, str):
                    row["semi_structured"] = fast
                else:
                    timer["semi_structured_ms"] = lambda m=fast, x=x: time_cuda(m, x)
            timers.append(timer)
        rows.append(row)
    samples = [{key: [] for key in timer} for timer in timers]
    with torch.inference_mode():
        for _ in range(rounds):
            for timer, sample in zip(timers, samples):
                for key, fn in timer.items():
                    sample[key].append(fn())
    base = statistics.median(samples[0]["ms"])
    for row, sample in zip(rows, samples):
        row.update({key: statistics.median(values) for key, values in sample.items()})
        row["vs_dense"] = round(row["ms"] / base, 3)
        if "semi_structured_ms" in row:
            row["semi_structured_vs_dense"] = round(row["semi_structured_ms"] / base, 3)
        print(json.dumps(row), flush=True)
    return rows


def measure(args) -> None:
    rows = []
    sizes = [s for s in SIZES if s[0] in args.ops]
    for op, dim, hidden, size in sizes[: args.sizes]:
        for batch in [1] if args.backend == "ort" else [1, 64]:
            rows += measure_size(args.backend, op, dim, hidden, size, batch, args.rounds)
    write_result(args.out, {"backend": args.backend, "rounds": args.rounds, "rows": rows})
    table([{"backend": args.backend, "rows": rows}])


def size_of(row: dict) -> tuple:
    return (row.get("op", "linear"), row["dim"], row.get("tokens", row.get("side")))


def table(results: list[dict]) -> None:
    """Per op: latency relative to dense, median (min-max) over the sizes, one column per
    backend and batch."""
    ops = sorted({r.get("op", "linear") for result in results for r in result["rows"]}, reverse=True)
    for op in ops:
        columns, cases = [], []
        for result in results:
            op_rows = [r for r in result["rows"] if r.get("op", "linear") == op]
            gpu = result.get("provenance", result).get("hardware", {}).get("gpu", "GPU")
            gpu = gpu.removeprefix("NVIDIA ").split()[0]  # "NVIDIA H100 80GB HBM3" -> "H100"
            name = "ORT CPU 1 thread" if result["backend"] == "ort" else f"{gpu} torch bf16"
            for batch in sorted({r["batch"] for r in op_rows}):
                rows = [r for r in op_rows if r["batch"] == batch]
                columns.append((f"{name}, batch {batch}", rows, "ms"))
                if any("semi_structured_ms" in r for r in rows):
                    columns.append((f"{gpu} 2:4 semi-structured, batch {batch}", rows, "semi_structured_ms"))
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
                    f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
                    if ratios
                    else "–"
                )
            print(f"| {pattern} | {level:g} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argument_parser(__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("measure", help="time every pattern and level at the spaces' sizes")
    run.add_argument("--backend", choices=["ort", "cuda"], required=True)
    run.add_argument("--ops", nargs="+", choices=["linear", "conv"], default=["linear", "conv"])
    run.add_argument("--sizes", type=int, default=None, help="only the first N sizes (a quick check)")
    run.add_argument("--rounds", type=int, default=ROUNDS)
    run.add_argument("--out", default=None)
    show = commands.add_parser("table", help="Markdown tables of result files")
    show.add_argument("files", nargs="+")
    args = parser.parse_args()
    if args.command == "measure":
        measure(args)
    else:
        table([json.load(open(path)) for path in args.files])


if __name__ == "__main__":
    main()
