"""The ``nas`` command: ``nas <command> [key=value ...]`` with Hydra overrides.

Heavy libraries (torch, optuna) are imported inside the commands so ``nas --help`` is instant.
Bad input ends with one line on stderr and exit code 2; Ctrl-C with exit code 130 (rerun the
same command to continue).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nas.command import ENTRY_POINTS, Command

USAGE = """\
usage: nas <command> [key=value ...] [--config-dir DIR] [--cfg]

commands:
  search     search a space; rerun the same command to resume or top up
               nas search +space=vit [sampler=tpe] [n_trials=100] [storage=sqlite:///nas.db]
  run        the whole path: search, train the distinct front and the baselines, measure
             every model alike, report; rerun the same command to continue
               nas run +space=vit [dataset=...] [device=cuda] [run.concurrent=8] [retrain.epochs=30]
  export     write a trial as model.onnx + arch.yaml, checked against torch
               nas export latency_budget_ms=0.5      (or trial=12)
  spaces     list the search spaces, their axes and number of members
               nas spaces
  train      train a found model or a timm baseline on its own (timm's training utilities)
               nas train trial=12 [init=inherit]   (or trials=[3,12], front=true, latency_budget_ms=X,
               arch=export/vit-trial12/arch.yaml, timm=resnet18, timm_baselines=true)
               [retrain.epochs=30] [trainer=tune trainer.gpus_per_trial=0.25]
  report     one HTML page + PNG per study: front, retrained front, timm baselines, hypervolume
               nas report [study_name=...] [out_dir=report]
  serve      the service: REST API (+ OpenAPI docs at /docs) and page over the study storage
               nas serve [host=127.0.0.1] [port=8080] [public_reads=false] [export_dir=export]
               [data_dirs=[/data]] [clusters=[head:6379]] [dashboard_url=http://host:8081/]
  token      bearer tokens of the service, stored hashed in the storage
               nas token create token_name=alice [scope=read|write|measure];  nas token revoke
               token_name=alice;  nas token list
  agent      a measurement agent on a target device (also `nas-agent`, installed without torch)
               nas agent server=http://host:8080 token_file=pi4.token   (nas agent --help)
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

keys (defaults in conf/config.yaml): storage, study_name, n_trials, seed, sampler_seed, device,
  cache_dir, dataset=embedded|fashion_mnist|cifar10|imagefolder, sampler=random|tpe|nsga2,
  profiler=onnxruntime|torch|flops|predictor|<plugin>, supernet=default|gpu, executor=local|ray,
  trial, latency_budget_ms, out_dir, overwrite, arch, trials, front, timm, timm_kwargs,
  timm_baselines, init, retrain.<recipe key>, trainer=local|processes|tune, baselines, run.<key>,
  n_samples, predictor,
  host, port, public_reads, export_dir, data_dirs, clusters, dashboard_url, token_name, scope
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

    data = instantiate("dataset", cfg.dataset).load()
    spaces = {}
    for name in group_options("space", config_dirs):  # all checked before anything is printed
        node = compose([f"+space={name}"], config_dirs).space
        spaces[name] = instantiate_space(node, data, config_dirs)
    table = Table(
        title=f"Search spaces (input {data.in_channels}x{data.image_size}x{data.image_size}, "
        f"{data.num_classes} classes)"
    )
    for column in ("space", "members", "axis", "choices"):
        table.add_column(column)
    for name, space in spaces.items():
        for i, (axis, choices) in enumerate(space.axes().items()):
            table.add_row(name if i == 0 else "", f"{space.size():,}" if i == 0 else "", axis, choices)
        table.add_section()
    console.print(table)
    return 0


def _dashboard(cfg, config_dirs, console) -> int:
    import socket

    from infra.errors import UserError
    from nas.study import load_existing_study, normalise_url, reading_storage

    with reading_storage(cfg.storage) as storage:  # an existing study database, never a new one
        if cfg.study_name is not None:
            load_existing_study(storage, cfg.study_name)
    try:
        socket.getaddrinfo(cfg.host, cfg.port)
    except (OSError, UnicodeError) as e:
        raise UserError(f"host: cannot resolve {cfg.host!r}: {e}") from None
    try:
        with socket.create_server((cfg.host, cfg.port)):
            pass
    except OSError as e:
        raise UserError(f"port: cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from None
    import signal

    from optuna_dashboard import run_server

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a server writes nothing: `kill` ends it at once
    console.print(f"optuna-dashboard on http://{cfg.host}:{cfg.port}/ for {cfg.storage} (Ctrl-C stops)")
    run_server(normalise_url(cfg.storage), host=cfg.host, port=cfg.port)
    return 0


def _profile(cfg, config_dirs, console) -> int:
    from nas.latency import run_profile

    return run_profile(cfg, config_dirs, console)


def _latency(cfg, config_dirs, console, action: str) -> int:
    from nas.latency import run_eval, run_fit

    return {"fit": run_fit, "eval": run_eval}[action](cfg, config_dirs, console)


def _report(cfg, config_dirs, console) -> int:
    from nas.report import run_report

    return run_report(cfg, config_dirs, console)


def _run(cfg, config_dirs, console) -> int:
    from nas.run import run_all

    return run_all(cfg, config_dirs, console)


def _agent(args: list[str]) -> int:
    from nas_agent.cli import main as agent_main

    return agent_main(args, prog="nas agent")


def _train(cfg, config_dirs, console) -> int:
    from nas.training.command import run_train

    return run_train(cfg, config_dirs, console)


COMMANDS = {
    "search": Command(_search),
    "run": Command(_run),
    "export": Command(_export),
    "spaces": Command(_spaces),
    "dashboard": Command(_dashboard),
    "profile": Command(_profile),
    "latency": Command(_latency, ("fit", "eval")),
    "train": Command(_train),
    "report": Command(_report),
    "agent": Command(_agent, own_args=True),
}


def _plugin_commands() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}


def find_command(name: str) -> Command | None:
    """The command called ``name``: one of ours, or one an installed package registers."""
    if name in COMMANDS:
        return COMMANDS[name]
    found = _plugin_commands().get(name)
    return found.load() if found is not None else None


def _split_options(args: list[str]) -> tuple[list[str], list[str], bool]:
    from infra.errors import UserError

    overrides, config_dirs, show = [], [], False
    it = iter(args)
    for arg in it:
        if arg == "--cfg":
            show = True
        elif arg == "--config-dir" or arg.startswith("--config-dir="):
            folder = arg.split("=", 1)[1] if "=" in arg else next(it, "")
            if not folder or not Path(folder).is_dir():
                raise UserError(
                    f"--config-dir: {folder!r} is not a directory"
                    if folder
                    else "--config-dir: no directory given"
                )
            config_dirs.append(folder)
        elif arg.startswith("-"):
            raise UserError(f"unknown option {arg!r}; options: --config-dir DIR, --cfg, --help")
        else:
            overrides.append(arg)
    return overrides, config_dirs, show


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    chosen = find_command(command)
    if chosen is None:
        valid = ", ".join([*COMMANDS, *_plugin_commands()])
        print(f"nas: error: unknown command {command!r}; valid: {valid}", file=sys.stderr)
        return 2
    if chosen.own_args:
        return chosen.run(rest)
    if any(a in ("-h", "--help") for a in rest):
        print(USAGE, end="")
        return 0
    action = None
    if chosen.actions:
        valid = chosen.actions
        if not rest or rest[0] not in valid:
            got = repr(rest[0]) if rest else "none"
            print(f"nas: error: nas {command} needs one of {', '.join(valid)}; got {got}", file=sys.stderr)
            return 2
        action, rest = rest[0], rest[1:]
    from rich.console import Console

    from infra.errors import UserError

    console = Console()
    try:
        overrides, config_dirs, show = _split_options(rest)
        from nas.config import compose

        cfg = compose(overrides, config_dirs)
        if show:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        if action:
            return chosen.run(cfg, config_dirs, console, action)
        return chosen.run(cfg, config_dirs, console)
    except UserError as e:
        print(f"nas {command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a run that failed in processes of its own, which printed their errors
        from nas.distributed import DistributedRunFailed

        if not isinstance(e, DistributedRunFailed):
            raise
        print(f"nas {command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nnas {command}: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


def console_main() -> None:
    """The ``nas`` executable: SIGTERM (``kill``, a scheduler stopping the job) ends the command
    as Ctrl-C does, so what it was writing is cleaned up or checkpointed."""
    import signal

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    sys.exit(main())
