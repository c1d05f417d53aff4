"""Compose the Hydra config and turn its objects into ours, with one-line errors for bad input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from infra.errors import UserError
from nas.schema import GROUP_KEYS, check_config, check_group

GROUPS = ("space", *(g for g in GROUP_KEYS if g != "space"))  # space first: it is named


def compose(overrides: list[str], config_dirs: list[str] = ()) -> DictConfig:
    """The config for ``overrides`` (Hydra syntax); extra ``config_dirs`` join the search path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    extra = (
        [f"hydra.searchpath=[{','.join('file://' + str(Path(d).resolve()) for d in config_dirs)}]"]
        if config_dirs
        else []
    )
    overrides = plugin_overrides(list(overrides), config_dirs)
    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=extra + list(overrides))
        container = OmegaConf.to_container(cfg, resolve=True)
    except yaml.YAMLError as e:
        raise UserError(_yaml_message(e)) from None
    except MissingConfigException as e:
        group = Path(e.missing_cfg_file or "").parent.name or "config"
        name = Path(e.missing_cfg_file or "").name
        valid = (
            ", ".join(choices(group, config_dirs) if group in GROUPS else sorted(e.options or [])) or "none"
        )
        raise UserError(f"unknown {group} {name!r}; valid: {valid}") from None
    except OverrideParseException as e:
        reason = e.message.splitlines()[-2 if e.message.count("\n") > 1 else 0].strip()
        raise UserError(f"{e.override!r} is not key=value in Hydra's override syntax: {reason}") from None
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        if first.startswith("Could not override") and "not in struct" in f"{e} {e.__cause__}":
            key = first.split("'")[1]
            first = f"unknown key {key!r}; nas --help lists the keys, --cfg shows the config"
        elif "No match in the defaults list" in str(e) and "space" in str(e):
            first = "space is chosen with a plus sign: +space=NAME"
        elif getattr(e, "full_key", None) and not first.startswith(str(e.full_key)):
            first = f"{e.full_key}: {first}"
        raise UserError(first) from None

    try:
        typed = check_config(container)
    except UserError as e:
        space = next((o.split("=", 1)[1] for o in overrides if o.startswith("+space=")), "")
        source = option_file("space", space, config_dirs) if space and str(e).startswith("space") else None
        raise UserError(f"{e} (in {source})" if source else str(e)) from None
    for key, value in typed.items():  # typed values back into the config
        if value != cfg[key] or type(value) is not type(cfg[key]):
            cfg[key] = value
    return cfg


def _yaml_message(error: Exception) -> str:
    """A YAML syntax error as one line naming the file and line (where the broken construct
    started, when YAML says so, e.g. an unclosed list)."""
    mark = getattr(error, "context_mark", None) or getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return f"YAML syntax error: {problem}"
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}" + (f" ({context})" if context else "")
    return f"{mark.name}: YAML syntax error at {where}: {problem}"


@dataclass(frozen=True)
class PluginOptions:
    """Options of a conf group that installed packages add through an entry-point group (no YAML
    of ours): chosen as ``group=NAME`` like any option, built through the group's ``generic``
    option with ``key=NAME``, their settings given as ``group.KEY=VALUE``."""

    entry_points: str
    generic: str = "plugin"
    key: str = "name"

    def names(self) -> set[str]:
        from importlib.metadata import entry_points

        return {ep.name for ep in entry_points(group=self.entry_points)}


PLUGINS = {"profiler": PluginOptions("nas.latency_models")}  # conf groups that plugins extend


def plugin_overrides(overrides: list[str], config_dirs: list[str] = ()) -> list[str]:
    """``group=NAME`` for an option an installed plugin adds (PLUGINS): the group's generic
    config with ``key=NAME``, and the ``group.KEY=VALUE`` settings added to it."""
    for group, plugin in PLUGINS.items():
        chosen = [o for o in overrides if o.startswith(f"{group}=")]
        if not chosen:
            continue
        name = chosen[-1].split("=", 1)[1]
        if name in group_options(group, config_dirs) or name not in plugin.names():
            continue  # a YAML option, or unknown: Hydra reports it with the valid ones
        rewritten = []
        for o in overrides:
            if o.startswith(f"{group}="):
                rewritten += [f"{group}={plugin.generic}", f"{group}.{plugin.key}={name}"]
            elif o.startswith(f"{group}.") and not o.startswith(f"{group}.{plugin.key}="):
                rewritten.append("+" + o)
            else:
                rewritten.append(o)
        overrides = rewritten
    return overrides


def choices(group: str, config_dirs: list[str] = ()) -> list[str]:
    """What ``group=NAME`` may name: the group's YAML options and the plugins' (for a group that
    plugins extend, its generic option is not itself a choice)."""
    names = set(group_options(group, config_dirs))
    plugin = PLUGINS.get(group)
    if plugin is not None:
        names = (names - {plugin.generic}) | plugin.names()
    return sorted(names)


def group_options(group: str, config_dirs: list[str] = ()) -> list[str]:
    """Names available in a conf group: the package's and those in user config dirs."""
    from importlib.resources import files

    names = {p.name[:-5] for p in files("conf").joinpath(group).iterdir() if p.name.endswith(".yaml")}
    for d in config_dirs:
        names |= {p.stem for p in (Path(d) / group).glob("*.yaml")}
    return sorted(names)


def option_file(group: str, name: str, config_dirs: list[str] = ()) -> Path | None:
    """The YAML file that defines ``group=name`` (the package's first, as Hydra searches)."""
    from importlib.resources import files

    packaged = Path(str(files("conf").joinpath(group, f"{name}.yaml")))
    candidates = [packaged] + [Path(d) / group / f"{name}.yaml" for d in config_dirs]
    found = next((p.resolve() for p in candidates if p.is_file()), None)
    if found is None:  # a file whose stem differs from the name it declares
        for d in config_dirs:
            for p in sorted((Path(d) / group).glob("*.yaml")):
                if f"name: {name}" in p.read_text():
                    return p.resolve()
    return found


def instantiate_space(
    node: Any, data: Any, config_dirs: list[str] = (), image_size: int | None = None
) -> Any:
    """The space of config ``node`` for ``data``'s input size (or ``image_size``) and classes;
    errors name the file."""
    try:
        return instantiate(
            "space",
            node,
            image_size=image_size or data.image_size,
            in_channels=data.in_channels,
            num_classes=data.num_classes,
        )
    except UserError as e:
        source = option_file("space", str(node.get("name", "")), config_dirs)
        raise UserError(f"{e} (in {source})" if source else str(e)) from None


def check_writable(key: str, folder: Path) -> None:
    """``folder`` is, or can be made, a writable folder (checked without creating anything)."""
    import os

    folder = folder.expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{key}: '{folder}' is a file, not a folder")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{key}: cannot create '{folder}': '{existing}' is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}: cannot write in '{existing}'")


def to_container(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def instantiate(group: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` of conf group ``node``, after checking its keys against the
    schema (nas.schema.check_group: types of the target's parameters); errors name the key.
    Where a value has the wrong type and the object itself says what is wrong with it, its
    message is the more specific one and is reported."""

    config = to_container(node) if not isinstance(node, dict) else node
    try:
        coerced = check_group(group, config, given=tuple(kwargs))
    except UserError as type_error:
        raise _construct(group, node, kwargs, domain_only=True) or type_error from None
    # Scalars the schema converted ("5" -> 5 for an integer parameter) go in typed.
    changed = {
        k: v
        for k, v in coerced.items()
        if not isinstance(v, (list, tuple, dict)) and (type(v) is not type(config[k]) or v != config[k])
    }
    return _construct(group, node, kwargs | changed)


def _construct(group: str, node: Any, kwargs: dict[str, Any], domain_only: bool = False) -> Any:
    """The object, or (``domain_only``) the UserError of a ValueError its constructor raised."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate
    from omegaconf.errors import MissingMandatoryValue

    try:
        built = hydra_instantiate(node, **kwargs)
        return None if domain_only else built
    except MissingMandatoryValue as e:
        if domain_only:
            return None
        key = getattr(e, "full_key", None) or group
        raise UserError(f"{key}: no value given; set {key}=...") from None
    except InstantiationException as e:
        cause = e.__cause__ or e
        if domain_only and not (isinstance(cause, ValueError) and not isinstance(cause, TypeError)):
            return None
        message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        if isinstance(cause, KeyError):
            message = message.strip("\"'")
        if isinstance(cause, TypeError) and "unexpected keyword argument" in message:
            message = f"unknown key: {message.split('argument')[-1].strip()}"
        if not message.startswith(group):
            message = f"{group}: {message}"
        error = UserError(message)
        if domain_only:
            return error
        raise error from None
