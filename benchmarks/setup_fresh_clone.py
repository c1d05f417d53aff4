"""How long does a fresh clone take to install and run the default search, and what does it find?

    python -m benchmarks.setup_fresh_clone --space vit --budget-ms 0.3 --out fresh_clone_vit.json
    python -m benchmarks.setup_fresh_clone --dir /tmp/fc --space hybrid --budget-ms 1.0   # same clone

Clones this repository's HEAD into ``--dir`` (a new temporary folder by default; an existing
clone is reused), installs it with ``make`` (the first half of ``make search``) and times, in the
clone: ``nas search +space=SPACE`` (supernet training and ``--trials`` trials), the same command
again (nothing left to do), a top-up by ``--top-up`` trials (supernet reused), ``nas export
latency_budget_ms=BUDGET``, and then the cost per trial of the study (setup_trial_costs).
Overrides given as arguments go to every search (e.g. ``supernet.epochs=1`` for a smoke run).
``--venv`` skips the install and runs the clone's code with another virtualenv's interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import REPO, argument_parser, write_result
from benchmarks.setup_trial_costs import print_costs, trial_costs

NOTES = ("val top-1", "completed trials", "is complete", "Exported trial")  # lines worth keeping


def step(name: str, command: list[str], cwd: Path, logs: Path, env: dict[str, str]) -> dict:
    """Run one timed step; the lines of its output that say what it did are kept as notes."""
    log = logs / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    lines = [line.strip() for line in log.read_text().splitlines() if line.strip()]
    if code != 0:
        sys.exit(f"{name} failed (exit {code}); see {log}:\n" + "\n".join(lines[-20:]))
    print(f"{name}: {wall:.1f} s", flush=True)
    notes = [line for line in lines if any(k in line for k in NOTES)] or lines[-1:]
    return {"step": name, "command": " ".join(command), "wall_s": round(wall, 1), "notes": notes}


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("overrides", nargs="*", help="more overrides for every search")
    parser.add_argument("--dir", default=None, help="the clone (default: a new temporary folder)")
    parser.add_argument("--space", default="vit")
    parser.add_argument("--trials", type=int, default=50, help="n_trials of the first search")
    parser.add_argument("--top-up", type=int, default=10, help="trials added by the third run")
    parser.add_argument("--budget-ms", type=float, default=None, help="nas export latency budget")
    parser.add_argument("--venv", default=None, help="use this virtualenv instead of installing one")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    clone = Path(args.dir or tempfile.mkdtemp(prefix="nas-fresh-clone-")).absolute()
    logs = clone.with_name(f"{clone.name}-logs")  # beside the clone: git clones into an empty folder only
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the clone's code only
    env["COLUMNS"] = "200"  # rich wraps its lines at 80 columns when it writes to a file
    steps = []
    if not (clone / ".git").exists():
        steps.append(step("clone", ["git", "clone", "--quiet", str(REPO), str(clone)], logs, logs, env))
    if args.venv:  # python -m nas run in the clone imports the clone's packages first
        nas = [str(Path(args.venv).absolute() / "bin" / "python"), "-m", "nas"]
    else:
        steps.append(step("install", ["make", ".venv/.installed"], clone, logs, env))
        nas = [str(clone / ".venv" / "bin" / "nas")]

    storage = f"sqlite:///{clone / 'nas.db'}"
    base = [*nas, "search", f"+space={args.space}"]
    search = [*base, f"n_trials={args.trials}", *args.overrides]
    steps.append(step("search", search, clone, logs, env))
    steps.append(step("search_again", search, clone, logs, env))
    top_up = [*base, f"n_trials={args.trials + args.top_up}", *args.overrides]
    steps.append(step("top_up", top_up, clone, logs, env))

    import optuna

    study = next(s for s in optuna.get_all_study_names(storage) if s.startswith(f"{args.space}-"))
    if args.budget_ms is not None:
        export = [*nas, "export", f"study_name={study}", f"latency_budget_ms={args.budget_ms}"]
        steps.append(step("export", [*export, "overwrite=true"], clone, logs, env))
    costs = trial_costs(storage, study)

    print(f"\nClone {clone}, study {study}\n")
    print("| step | wall time | what it said |")
    print("| --- | --- | --- |")
    for s in steps:
        print(f"| {s['step']} | {s['wall_s']:.1f} s | {' / '.join(s['notes'])[:300]} |")
    print()
    print_costs(costs)
    write_result(args.out, {"clone": str(clone), "study": study, "steps": steps, "trial_costs": costs})


if __name__ == "__main__":
    main()
