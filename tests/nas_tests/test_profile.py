"""``nas profile``: one architecture's latency statistics, through the latency table of an
existing study database (and without one: measured, never stored, no database created)."""

import shutil

from tests.conftest import nas_in_process as run_nas

FAST = ["profiler.runs=10", "profiler.warmup=2"]


def test_profile_an_arch_file(tmp_path, tiny_space, tiny_study):
    (tmp_path / "arch.yaml").write_text(tiny_space.largest().to_yaml())
    alone = run_nas("profile", "arch=arch.yaml", *FAST, cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    for word in (
        "median",
        "p90",
        "per-call CV",
        "round medians' spread",
        "runs / warm-up",
        "1 x (1, 28, 28)",
        "measured now",
        "not used",
    ):
        assert word in alone.stdout, word
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.yaml"]  # no database created

    shutil.copy(tiny_study / "nas.db", tmp_path / "nas.db")
    fresh = ["profiler.runs=11", "profiler.warmup=2"]  # settings the study (which has it) did not use
    first = run_nas("profile", "arch=arch.yaml", *fresh, cwd=tmp_path)
    assert first.returncode == 0 and "measured now" in first.stdout, first.stderr
    again = run_nas("profile", "arch=arch.yaml", *fresh, cwd=tmp_path)
    assert again.returncode == 0 and "latency table in sqlite:///nas.db" in again.stdout
    torch_cpu = ["profiler=torch", "profiler.device=cpu"]
    cpu_torch = run_nas("profile", "arch=arch.yaml", *torch_cpu, *FAST, cwd=tmp_path)
    assert cpu_torch.returncode == 0 and "measured now" in cpu_torch.stdout, cpu_torch.stderr
    flops = run_nas("profile", "arch=arch.yaml", "profiler=flops", cwd=tmp_path)
    assert flops.returncode == 0 and "MFLOPs" in flops.stdout
    trial = run_nas("profile", "trial=0", "profiler=flops", cwd=tmp_path)
    assert trial.returncode == 0 and "trial 0 of tiny-fashion_mnist_6k" in " ".join(trial.stdout.split())
