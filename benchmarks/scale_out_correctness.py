"""Do K workers on one study finish exactly n trials, losing none, scoring none twice, with no
lock errors? One real ``nas search`` with ``executor.n_workers=K``, then the study's census.

    python -m benchmarks.scale_out_correctness --storage sqlite --workers 4 --trials 400
    python -m benchmarks.scale_out_correctness --storage postgresql --workers 4 --trials 400
    python -m benchmarks.scale_out_correctness --storage sqlite --executor ray --workers 4 --trials 400

``profiler=flops`` by default, so that scoring, not measuring, sets the pace and the SQL traffic
is as dense as it gets. PostgreSQL: a fresh database on the server of $NAS_TEST_POSTGRES
(default postgresql://postgres@127.0.0.1:5432/postgres). Killing workers and the driver is
covered by tests (tests/nas_tests/test_executors.py, test_crash.py), not here.
"""

from __future__ import annotations

import os
import uuid

from sqlalchemy.engine import make_url

from benchmarks._harness import argument_parser, write_result
from benchmarks._scale_out import add_common_arguments, census, search, sqlite_url, workdir_of

POSTGRES = os.environ.get("NAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def fresh_postgres() -> str:
    """A new, empty database on the PostgreSQL server of POSTGRES; its URL."""
    import sqlalchemy as sa

    from infra.storage import normalise_url

    admin_url = normalise_url(POSTGRES)
    name = f"nas_scale_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argument_parser(__doc__)
    add_common_arguments(parser, workers=4)
    parser.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--profiler", default="flops")
    parser.add_argument("--sampler", default="random")
    args = parser.parse_args()

    workdir = workdir_of(args)
    storage = sqlite_url(workdir, "correctness") if args.storage == "sqlite" else fresh_postgres()
    study = f"scale-{args.storage}"
    overrides = [f"storage={storage}", f"study_name={study}", f"n_trials={args.trials}"]
    overrides += [
        f"executor.n_workers={args.workers}",
        f"profiler={args.profiler}",
        f"sampler={args.sampler}",
    ]
    overrides += (["executor=ray"] if args.executor == "ray" else []) + args.extra
    name = f"correctness_{args.storage}_{args.executor}"
    wall = search(workdir, overrides, name)
    result = census(storage, study, workdir / f"{name}.log")
    result |= {"storage": args.storage, "executor": args.executor, "workers": args.workers}
    result |= {"n_trials": args.trials, "profiler": args.profiler, "sampler": args.sampler}
    result["wall_s"] = round(wall, 1)
    result["storage_url"] = make_url(storage).render_as_string(hide_password=True)
    for key in ("completed", "lost", "duplicated", "lock_errors", "failed", "reused", "surplus_pruned"):
        print(f"{key}: {result[key]}")
    print(f"per worker: {result['per_worker']}; trial phase {result['trial_span_s']} s; wall {wall:.0f} s")
    write_result(args.out or workdir / f"scale_out_{name}.json", result)


if __name__ == "__main__":
    main()
