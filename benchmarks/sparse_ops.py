"""What does weight sparsity buy? Latency of the spaces' SparsePair ops per pattern and level,
relative to the dense op of the same size, at the layer sizes the spaces use:

  linear: SparseLinear MLP (fc1 -> ReLU -> fc2) of the vit space, on N tokens
  conv:   SparseConv2d Fused-MBConv body (3x3 conv -> ReLU -> 1x1 conv) of the hybrid space

    python benchmarks/sparse_ops_bench.py --backend ort --out benchmarks/results/sparse_ort_cpu.json
    python benchmarks/sparse_ops_bench.py --backend cuda --out benchmarks/results/sparse_cuda.json

ort:  ONNX Runtime on the CPU, 1 intra-op thread, batch of 1 image.
cuda: torch on the GPU (bf16), CUDA-event timing, batch 1 and 64 images; 2:4 linear layers are
      also run with torch's 2:4 semi-structured kernels (torch has none for convolutions).
Each case: median of 100 calls per round, 7 rounds interleaved across cases, median round.
Masked weights stay dense with zeros (what the exporter ships); structured sparsity removes hidden
units / channels, so its op is physically smaller.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from search_spaces.arch import pattern_level  # noqa: E402
from search_spaces.layers import ConvMlp, Mlp  # noqa: E402
from search_spaces.sparse import sparsify_pair  # noqa: E402

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


def time_ort(model: nn.Module, shape: tuple[int, ...], runs: int = 100) -> float:
    import io

    import numpy as np

    from latency_models.onnxruntime import OnnxRuntimeProfiler

    session = getattr(model, "ort_session", None)
    if session is None:  # one session per model, reused across rounds
        buffer = io.BytesIO()
        torch.onnx.export(model, (torch.rand(shape),), buffer, input_names=["x"], dynamo=False)
        session = model.ort_session = OnnxRuntimeProfiler().session(buffer.getvalue())
    feed = {"x": np.random.default_rng(0).random(shape, dtype=np.float32)}
    for _ in range(30):
        session.run(None, feed)
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def time_cuda(fn, x: torch.Tensor, runs: int = 100) -> float:
    for _ in range(30):
        fn(x)
    torch.cuda.synchronize()
    samples = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
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


def measure_size(backend: str, op: str, dim: int, hidden: int, size: int, batch: int) -> list[dict]:
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
        for _ in range(ROUNDS):
            for timer, sample in zip(timers, samples):
                for key, fn in timer.items():
                    sample[key].append(fn())
    base = statistics.median(samples[0]["ms"])
    for row, sample in zip(rows, samples):
        row.update({key: statistics.median(values) for key, values in sample.items()})
        row["vs_dense"] = round(row["ms"] / base, 3)
        if "semi_structured_ms" in row:
            row["semi_structured_vs_dense"] = round(row["semi_structured_ms"] / base, 3)
        print(json.dumps(row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["ort", "cuda"], required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for op, dim, hidden, size in SIZES:
        for batch in [1] if args.backend == "ort" else [1, 64]:
            rows += measure_size(args.backend, op, dim, hidden, size, batch)
    from latency_models.hardware import fingerprint

    result = {"backend": args.backend, "hardware": fingerprint(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
