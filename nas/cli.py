"""The ``nas`` command: ``nas <command> [key=value ...]`` with Hydra overrides.

Heavy libraries (torch, optuna) are imported inside the commands so ``nas --help`` is instant.
Bad input ends with one line on stderr and exit code 2; Ctrl-C with exit code 130 (rerun the
same command to continue).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

USAGE = """\
usage: nas <command> [key=value ...] [--config-dir DIR] [--cfg]

commands:
  search     search a space; rerun the same command to resume or top up
               nas search +space=vit [sampler=tpe] [n_trials=100] [storage=sqlite:///nas.db]
  export     write a trial as model.onnx + arch.yaml, checked against torch
               nas export latency_budget_ms=0.5      (or trial=12)
  spaces     list the search spaces, their axes and number of members
               nas spaces
  dashboard  serve optuna-dashboard on the study storage
               nas dashboard [port=8080]
  profile    measure one architecture and print its latency statistics
               nas profile arch=export/vit-trial7/arch.yaml [profiler=torch]   (or trial=7)
  latency    the learned latency predictor of a space, for this hardware
               nas latency fit +space=vit [profiler=onnxruntime] [n_samples=200]
               nas latency eval +space=vit [n_samples=200]
               then: nas search +space=vit profiler=predictor

options:
  --config-dir DIR  also read config groups (e.g. DIR/space/myspace.yaml) from DIR
  --cfg             print the composed config and exit

keys (defaults in conf/config.yaml): storage, study_name, n_trials, seed, device, cache_dir,
  dataset=embedded|fashion_mnist|cifar10|imagefolder, sampler=random|tpe|nsga2,
  profiler=onnxruntime|torch|flops|predictor|<plugin>, supernet.<recipe key>, trial,
  latency_budget_ms, out_dir, arch, n_samples, predictor
"""


def _search(cfg, config_dirs, console) -> int:
    from nas.search import prepare, run_search

    return run_search(prepare(cfg, config_dirs), console)


def _export(cfg, config_dirs, console) -> int:
    from nas.export import run_export

    return run_export(cfg, console)


def _spaces(cfg, config_dirs, console) -> int:
    from rich.table import Table

    from nas.config import compose, group_options, instantiate, instantiate_space
    from nas.errors import UserError

    data = instantiate("dataset", cfg.dataset).load()
    table = Table(
        title=f"Search spaces (input {data.in_channels}x{data.image_size}x{data.image_size}, "
        f"{data.num_classes} classes)"
    )
    for column in ("space", "members", "axis", "choices"):
        table.add_column(column)
    for name in group_options("space", config_dirs):
        try:
            node = compose([f"+space={name}"], config_dirs).space
            space = instantiate_space(node, data, config_dirs)
        except UserError as e:
            table.add_row(name, "-", "error", str(e))
            continue
        axes = space.axes()
        if hasattr(space, "width_depth_extremes"):
            from latency_models.flops import count_params
            from search_spaces.layers import build_model

            wide, deep = space.width_depth_extremes()
            axes["width vs depth"] = (
                f"{wide.summary()}: {count_params(build_model(wide)):,} params ... "
                f"{deep.summary()}: {count_params(build_model(deep)):,} params"
            )
        for i, (axis, choices) in enumerate(axes.items()):
            table.add_row(name if i == 0 else "", f"{space.size():,}" if i == 0 else "", axis, choices)
        table.add_section()
    console.print(table)
    return 0


def _dashboard(cfg, config_dirs, console) -> int:
    from sqlalchemy.engine import make_url

    from nas.errors import UserError
    from nas.study import check_storage_url

    check_storage_url(cfg.storage)
    url = make_url(cfg.storage)
    if url.drivername.startswith("sqlite") and not Path(url.database or "").expanduser().is_file():
        raise UserError(f"storage: {cfg.storage!r} holds no study yet; run nas search first")
    from optuna_dashboard import run_server

    console.print(f"optuna-dashboard on http://{cfg.host}:{cfg.port}/ for {cfg.storage} (Ctrl-C stops)")
    from nas.study import normalise_url

    run_server(normalise_url(cfg.storage), host=cfg.host, port=cfg.port)
    return 0


def _profile(cfg, config_dirs, console) -> int:
    from nas.latency import run_profile

    return run_profile(cfg, config_dirs, console)


def _latency(cfg, config_dirs, console, action: str) -> int:
    from nas.latency import run_eval, run_fit

    return {"fit": run_fit, "eval": run_eval}[action](cfg, config_dirs, console)


COMMANDS: dict[str, Callable] = {
    "search": _search,
    "export": _export,
    "spaces": _spaces,
    "dashboard": _dashboard,
    "profile": _profile,
    "latency": _latency,
}
SUBCOMMANDS = {"latency": ("fit", "eval")}


def _split_options(args: list[str]) -> tuple[list[str], list[str], bool]:
    overrides, config_dirs, show = [], [], False
    it = iter(args)
    for arg in it:
        if arg == "--cfg":
            show = True
        elif arg == "--config-dir":
            config_dirs.append(next(it, ""))
        elif arg.startswith("--config-dir="):
            config_dirs.append(arg.split("=", 1)[1])
        else:
            overrides.append(arg)
    return overrides, config_dirs, show


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"nas: error: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in rest):
        print(USAGE, end="")
        return 0
    action = None
    if command in SUBCOMMANDS:
        valid = SUBCOMMANDS[command]
        if not rest or rest[0] not in valid:
            got = repr(rest[0]) if rest else "none"
            print(f"nas: error: nas {command} needs one of {', '.join(valid)}; got {got}", file=sys.stderr)
            return 2
        action, rest = rest[0], rest[1:]
    from rich.console import Console

    from nas.errors import UserError

    console = Console()
    overrides, config_dirs, show = _split_options(rest)
    try:
        for d in config_dirs:
            if not Path(d).is_dir():
                raise UserError(f"--config-dir: {d!r} is not a directory")
        from nas.config import compose

        cfg = compose(overrides, config_dirs)
        if show:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        if action:
            return COMMANDS[command](cfg, config_dirs, console, action)
        return COMMANDS[command](cfg, config_dirs, console)
    except UserError as e:
        print(f"nas {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nnas {command}: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


def console_main() -> None:
    sys.exit(main())
