import pytest
import torch

from latency_models import LatencyProfiler, LatencyResult, create_profiler, list_profilers
from latency_models.flops import count_flops
from search_spaces.networks import build_model


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert {"onnxruntime", "flops"} <= set(list_profilers())
    with pytest.raises(KeyError, match="valid: .*onnxruntime"):
        create_profiler("tensorrt")


def test_onnxruntime_profiler_measures_a_real_session(vit_space):
    profiler = create_profiler("onnxruntime", warmup=3, runs=20)
    assert isinstance(profiler, LatencyProfiler)
    small, big = vit_space.smallest(), vit_space.largest()
    r_small, r_big = profiler.measure(small), profiler.measure(big)
    for r in (r_small, r_big):
        assert r.unit == "ms" and r.n_warmup == 3
        assert r.n_runs >= 20 and r.n_runs % 4 == 0  # 5 rounds of 4, more while they disagree
        assert 0 < r.median <= r.p90 and r.std >= 0
        # where the measurement's time went: export, wait for the machine, timing (1+ attempts)
        assert set(r.seconds) == {"export", "wait", "timing", "attempts"} and r.seconds["attempts"] >= 1
        assert r.seconds["export"] > 0 and r.seconds["timing"] > 0 and r.seconds["wait"] >= 0
    # 100x the FLOPs: measurably slower, whatever the machine.
    assert r_big.median > r_small.median
    assert profiler.settings()["threads"] == 1


def test_flops_proxy_counts_attention_on_cpu(vit_space):
    import dataclasses

    arch = vit_space.largest()
    linear = dataclasses.replace(
        arch, layers=tuple(dataclasses.replace(layer, attention="linear") for layer in arch.layers)
    )
    n, hd, h = arch.num_tokens, arch.head_dim, arch.layers[0].num_heads
    sm, lin = (
        count_flops(build_model(arch), arch.input_shape),
        count_flops(build_model(linear), arch.input_shape),
    )
    # Per head and layer, softmax costs QK^T + AV = 2 * (2 N^2 hd) FLOPs; ReLU linear attention
    # costs K^T V + Q (K^T V) = 2 * (2 N hd^2) plus the normaliser Q sum(K) = 2 N hd.
    softmax_part = 4 * n * n * hd
    linear_part = 4 * n * hd * hd + 2 * n * hd
    assert sm - lin == arch.depth * h * (softmax_part - linear_part)
    proxy = create_profiler("flops").measure(arch)
    assert proxy.unit == "MFLOPs" and proxy.median == pytest.approx(sm / 1e6)
    params = create_profiler("flops", metric="params").measure(arch)
    assert params.median == pytest.approx(sum(p.numel() for p in build_model(arch).parameters()) / 1e6)
    with pytest.raises(ValueError, match="metric"):
        create_profiler("flops", metric="joules")


def test_latency_result_statistics():
    r = LatencyResult.from_samples([1.0, 2.0, 3.0, 4.0, 100.0], unit="ms")
    assert r.median == 3.0 and r.p90 == 100.0 and r.n_runs == 5
    assert r.mean == pytest.approx(22.0) and r.cv == pytest.approx(r.std / 22.0)
    assert r.to_dict()["cv"] == pytest.approx(r.cv)
    assert r.spread is None and r.steadiness == r.cv  # one round: only the per-call spread


def test_a_figure_in_rounds_is_as_steady_as_its_round_medians():
    """A few slow calls (an interrupt, a page fault) make the per-call CV large while the
    median, the figure, would come out the same if measured again: steadiness is the spread of
    the round medians; a round that is slow throughout shows there."""
    rounds = [[1.0] * 19 + [30.0], [1.01] * 20, [0.99] * 20]
    r = LatencyResult.from_rounds(rounds, unit="ms")
    assert r.median == 1.0 and r.cv > 0.5
    assert r.spread == pytest.approx(0.00816, rel=0.01) and r.steadiness == r.spread
    assert LatencyResult.from_dict(r.to_dict()) == r  # kept in the latency table as measured
    slow_round = LatencyResult.from_rounds([[1.0] * 20, [1.0] * 20, [1.3] * 20])
    assert slow_round.steadiness > 0.1


def test_profiler_measures_the_given_model(vit_space):
    arch = vit_space.smallest()
    model = build_model(arch)
    torch.nn.init.zeros_(model.head.weight)
    r = create_profiler("onnxruntime", warmup=1, runs=3).measure(arch, model)
    assert r.median > 0


def test_torch_profiler_settings_are_checked(tiny_space):
    with pytest.raises(ValueError, match="semi_structured"):
        create_profiler("torch", device="cpu", semi_structured=True)
    with pytest.raises(ValueError, match="dtype"):
        create_profiler("torch", device="cpu", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            create_profiler("torch")  # the default device is cuda: refused, not silently CPU
    bf16 = create_profiler("torch", device="cpu", dtype="bfloat16", runs=10, warmup=2)
    r = bf16.measure(tiny_space.smallest())
    assert r.median > 0 and r.input_shape == (1, 28, 28)


@pytest.mark.slow
def test_torch_profiler_times_the_compiled_model(tiny_space):
    """torch.compile on CPU (inductor, C++): about 40 s here, so marked slow."""
    profiler = create_profiler("torch", device="cpu", compile=True, runs=10, warmup=3)
    assert profiler.settings()["compile"] is True
    assert profiler.measure(tiny_space.smallest()).median > 0


def test_image_size_measures_at_another_resolution(tiny_space):
    arch = tiny_space.smallest()  # patch 14 divides 56
    small = create_profiler("onnxruntime", runs=10, warmup=2).measure(arch)
    large = create_profiler("onnxruntime", runs=10, warmup=2, image_size=56).measure(arch)
    assert small.input_shape == (1, 28, 28) and large.input_shape == (1, 56, 56)
    with pytest.raises(ValueError, match="image_size"):
        create_profiler("onnxruntime", image_size=30).measure(arch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA events, 2:4 kernels: needs a GPU")
def test_torch_profiler_on_cuda(vit_space):
    """CUDA events per call; bfloat16 with 2:4 semi-structured kernels; torch.compile."""
    small, big = vit_space.smallest(), vit_space.largest()
    events = create_profiler("torch", device="cuda", runs=20, warmup=5)
    r_small, r_big = events.measure(small), events.measure(big)
    assert 0 < r_small.median < r_big.median and r_big.n_runs >= 20
    import dataclasses

    from torch.sparse import SparseSemiStructuredTensor

    two_four = dataclasses.replace(
        big, layers=tuple(dataclasses.replace(x, mlp_pattern="2:4", mlp_sparsity=0.5) for x in big.layers)
    )
    semi = create_profiler("torch", device="cuda", dtype="bfloat16", semi_structured=True, runs=20, warmup=5)
    prepared = semi.prepare(build_model(two_four))
    assert isinstance(prepared.blocks[0].mlp.fc1.weight, SparseSemiStructuredTensor)
    assert semi.measure(two_four).median > 0
    compiled = create_profiler("torch", device="cuda", compile=True, runs=20, warmup=5)
    assert compiled.measure(small).median > 0
