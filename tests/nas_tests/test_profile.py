"""``nas profile``: one architecture's latency statistics, through the latency table."""

from tests.conftest import run_nas

FAST = ["profiler.runs=10", "profiler.warmup=2"]


def test_profile_an_arch_file(tmp_path, tiny_space):
    (tmp_path / "arch.yaml").write_text(tiny_space.largest().to_yaml())
    first = run_nas("profile", "arch=arch.yaml", *FAST, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for word in ("median", "p90", "spread (CV)", "runs / warm-up", "1 x (1, 28, 28)", "measured now"):
        assert word in first.stdout, word
    again = run_nas("profile", "arch=arch.yaml", *FAST, cwd=tmp_path)
    assert again.returncode == 0 and "latency table in sqlite:///nas.db" in again.stdout
    torch_cpu = ["profiler=torch", "profiler.device=cpu"]
    cpu_torch = run_nas("profile", "arch=arch.yaml", *torch_cpu, *FAST, cwd=tmp_path)
    assert cpu_torch.returncode == 0 and "measured now" in cpu_torch.stdout, cpu_torch.stderr
    flops = run_nas("profile", "arch=arch.yaml", "profiler=flops", cwd=tmp_path)
    assert flops.returncode == 0 and "MFLOPs" in flops.stdout


def test_profile_bad_input_is_one_line(tmp_path):
    (tmp_path / "junk.yaml").write_text("layers: 3\n")
    cases = {
        (): "arch=FILE.yaml",
        ("arch=missing.yaml",): "missing.yaml",
        ("arch=junk.yaml",): "junk.yaml",
        ("arch=junk.yaml", "trial=3"): "not both",
    }
    for args, message in cases.items():
        result = run_nas("profile", *args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "nas.db").exists()
