"""The typed schema of the whole configuration, checked before any command writes anything.

Two layers, one rule (a bad value is one line that names its key):

* ``NasConfig`` -- the top-level keys of ``conf/config.yaml`` as a pydantic model: types,
  ranges, enums, and no unknown keys (also none added with ``+key=value``).
* Every conf group node (``dataset``, ``sampler``, ``profiler``, ``supernet``, ``executor``,
  ``space``) is checked against the typed signature of the object its ``_target_`` builds
  (for ``latency_models.create_profiler``, the registered profiler's): each given key must be a
  parameter, and its value must have the parameter's type. Ranges are the object's own business
  (its constructor raises ``ValueError`` naming the key), so ``nas.config.instantiate`` builds
  every object before anything is written.

Type errors of pydantic become messages such as ``n_trials: expected an integer, got 'abc'``.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import re
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from infra.errors import UserError

Objective = Literal["accuracy", "latency", "nonzero_params", "params", "flops"]


class NasConfig(BaseModel):
    """Top-level keys (defaults and comments in ``conf/config.yaml``)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    storage: str = Field(min_length=1)
    study_name: str | None = Field(default=None, min_length=1)
    objectives: list[Objective] = Field(min_length=1)
    accuracy: Literal["float", "int8"] = "float"
    n_trials: Annotated[int, Field(ge=1)]
    seed: Annotated[int, Field(ge=0, lt=2**32)]
    sampler_seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None
    device: str
    cache_dir: str = Field(min_length=1)
    checkpoint_every_s: Annotated[float, Field(ge=0)]
    heartbeat_s: Annotated[float, Field(gt=0)]
    max_consecutive_failures: Annotated[int, Field(ge=1)]
    progress: bool
    # nas export
    trial: Annotated[int, Field(ge=0)] | None = None
    latency_budget_ms: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    out_dir: str | None = Field(default=None, min_length=1)
    overwrite: bool = False
    # nas profile
    arch: str | None = Field(default=None, min_length=1)
    # nas latency fit / eval
    n_samples: Annotated[int, Field(ge=1)]
    predictor: str | None = Field(default=None, min_length=1)
    # nas train
    trials: list[Annotated[int, Field(ge=0)]] | None = None
    front: bool = False
    timm: str | None = Field(default=None, min_length=1)
    timm_kwargs: dict[str, Any] | None = None
    init: Literal["scratch", "inherit"] = "scratch"
    timm_baselines: bool = False
    # nas serve / nas token
    public_reads: bool = False
    export_dir: str = Field(default="export", min_length=1)
    data_dirs: list[str] = Field(default_factory=list)
    clusters: list[str] = Field(default_factory=list)
    dashboard_url: str | None = Field(default=None, min_length=1)
    token_name: str | None = Field(default=None, min_length=1, max_length=200)
    scope: Literal["read", "write", "measure"] = "read"
    # nas dashboard
    host: str = Field(min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)]
    # conf groups: each node is checked against its target's signature (check_group)
    dataset: dict[str, Any]
    sampler: dict[str, Any]
    profiler: dict[str, Any]
    supernet: dict[str, Any]
    executor: dict[str, Any]
    retrain: dict[str, Any]
    trainer: dict[str, Any]
    baselines: dict[str, Any]
    run: dict[str, Any]
    space: dict[str, Any] | None = None

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"expected distinct names, got {value}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"expected auto, cpu or cuda[:N], got {value!r}")
        return value


GROUP_KEYS = (
    "dataset",
    "sampler",
    "profiler",
    "supernet",
    "executor",
    "retrain",
    "trainer",
    "baselines",
    "run",
    "space",
)


def check_config(config: dict[str, Any], skip_groups: tuple[str, ...] = ("space",)) -> dict[str, Any]:
    """``config`` (the composed config as plain containers) checked against the schema; returns
    the top-level values coerced to their types (``5.0`` -> ``5`` for an integer key)."""
    _reject_bools(NasConfig, config, "")
    try:
        model = NasConfig.model_validate(config)
    except ValidationError as e:
        raise UserError(_message(e, "")) from None
    for group in GROUP_KEYS:
        node = config.get(group)
        if node is not None and group not in skip_groups:
            check_group(group, node)
    return {k: v for k, v in model.model_dump().items() if k in config and k not in GROUP_KEYS}


def check_group(group: str, node: dict[str, Any], given: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys of conf group ``node`` checked against the parameters of what its ``_target_``
    builds; returns the values coerced to the parameters' types. ``given`` names parameters the
    caller passes itself (e.g. a space's image size); they are not checked here."""
    for key, value in node.items():
        if value == "???":
            raise UserError(f"{group}.{key}: no value given; set {group}.{key}=...")
    found = _target(group, node)
    if found is None:
        return {}
    target, consumed = found
    given = tuple(given) + tuple(consumed)
    parameters, open_ended = _parameters(target)
    coerced = {}
    for key, value in node.items():
        if key.startswith("_") or key in given:
            continue
        if key not in parameters:
            if open_ended:
                continue
            valid = ", ".join(sorted(k for k in parameters if k not in given)) or "none"
            what = f"{target.__module__}.{getattr(target, '__qualname__', target)}"
            raise UserError(f"{group}.{key}: unknown key for {what} (valid: {valid})")
        annotation = parameters[key]
        if isinstance(value, dict) and "_target_" in value:  # a nested object: Hydra builds it
            continue
        coerced[key] = check_value(f"{group}.{key}", annotation, value)
    return coerced


def check_value(key: str, annotation: Any, value: Any) -> Any:
    """``value`` checked against ``annotation`` (pydantic, lax: ``"5"`` is an integer); bools
    are never numbers. Returns the coerced value."""
    adapter = _adapter(annotation)
    if adapter is None:
        return value
    if isinstance(value, bool) and not _allows_bool(annotation):
        raise UserError(f"{key}: expected {_describe(annotation)}, got {value!r}")
    try:
        return adapter.validate_python(value)
    except ValidationError as e:
        raise UserError(_message(e, key, annotation)) from None


def _target(group: str, node: dict[str, Any]) -> tuple[Any, tuple[str, ...]] | None:
    """What ``node`` builds, and the keys its factory consumes itself (e.g. a registry name)."""
    path = node.get("_target_")
    if not isinstance(path, str):
        return None
    try:
        target = locate(path)
    except Exception:  # noqa: BLE001 - any import failure of a user's _target_
        raise UserError(f"{group}._target_: cannot import {path!r}") from None
    if isinstance(target, BuildsByName):
        try:
            return target.target_for(node)
        except KeyError as e:
            raise UserError(f"{group}: {str(e).strip(chr(34) + chr(39))}") from None
    return target, ()


@typing.runtime_checkable
class BuildsByName(typing.Protocol):
    """A ``_target_`` that builds one of several registered objects, chosen by a key of the node
    (e.g. ``latency_models.create_profiler`` and ``name``): ``target_for(node)`` returns what the
    node builds and the keys the factory consumes itself, so the node's other keys are checked
    against the signature of what it builds, not of the factory."""

    def target_for(self, node: dict[str, Any]) -> tuple[Any, tuple[str, ...]]: ...


def locate(path: str) -> Any:
    """The object a dotted ``_target_`` path names, imported but not called (Hydra's own lookup,
    without the three lines Hydra logs for a missing name: the caller reports it in one)."""
    import logging

    from hydra.utils import get_object

    logger = logging.getLogger("hydra.utils")
    disabled, logger.disabled = logger.disabled, True
    try:
        return get_object(path)
    finally:
        logger.disabled = disabled


def _parameters(target: Any) -> tuple[dict[str, Any], bool]:
    """``(name -> annotation, accepts **kwargs)`` of ``target``'s call signature."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return {}, True
    function = target.__init__ if inspect.isclass(target) else target
    namespace = dict(vars(typing)) | dict(vars(collections.abc)) | getattr(function, "__globals__", {})
    parameters, open_ended = {}, False
    for name, p in signature.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            open_ended = True
        elif p.kind is not p.VAR_POSITIONAL:
            parameters[name] = _resolve(p.annotation, namespace)
    return parameters, open_ended


def _resolve(annotation: Any, namespace: dict[str, Any]) -> Any:
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        try:
            return eval(annotation, namespace)  # noqa: S307 - a library's own annotation string
        except Exception:  # noqa: BLE001 - names only imported for type checkers
            return Any
    return annotation


@functools.lru_cache(maxsize=512)
def _adapter_cached(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - a type pydantic cannot check: accept any value
        return None


def _adapter(annotation: Any) -> TypeAdapter | None:
    if annotation is Any:
        return None
    try:
        return _adapter_cached(annotation)
    except TypeError:  # unhashable annotation
        return None


def _allows_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    args = typing.get_args(annotation)
    return any(_allows_bool(a) for a in args) if args else False


def _reject_bools(model: type[BaseModel], config: dict[str, Any], prefix: str) -> None:
    for name, field in model.model_fields.items():
        value = config.get(name)
        if isinstance(value, bool) and not _allows_bool(field.annotation):
            raise UserError(f"{prefix}{name}: expected {_describe(field.annotation)}, got {value!r}")


_UNIONS = (typing.Union, getattr(__import__("types"), "UnionType", None))
_TYPES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "NoneType": "null",
    "list": "a list",
    "tuple": "a list",
    "dict": "a mapping",
}


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _describe(args[0])
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    if origin in (list, tuple, collections.abc.Sequence):
        inner = [a for a in args if a is not Ellipsis]
        return f"a list of {_plural(_describe(inner[0]))}" if inner else "a list"
    name = getattr(annotation, "__name__", str(annotation))
    return _TYPES.get(name, name)


def _plural(description: str) -> str:
    for article in ("an ", "a "):
        if description.startswith(article):
            return description[len(article) :] + "s"
    return description


def _message(error: ValidationError, prefix: str, annotation: Any = None) -> str:
    """The first error of ``error`` as ``key: expected ..., got ...``."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    kind, value = first["type"], first.get("input")
    top = loc[0] if loc and not prefix else None
    key = ".".join(([prefix] if prefix else []) + loc[: 1 if top else 0])
    index = loc[1:] if top else loc
    where = f" (item {'.'.join(index)})" if index else ""
    if kind == "extra_forbidden":
        return f"unknown key {key!r}; nas --help lists the keys, --cfg shows the config"
    if kind == "missing":
        return f"{key}: no value given; set {key}=..."
    if top and annotation is None:
        annotation = NasConfig.model_fields[top].annotation
    expected = {
        "greater_than": lambda c: f"a value > {c['gt']}",
        "greater_than_equal": lambda c: f"a value >= {c['ge']}",
        "less_than": lambda c: f"a value < {c['lt']}",
        "less_than_equal": lambda c: f"a value <= {c['le']}",
        "string_pattern_mismatch": lambda c: f"a value matching {c['pattern']}",
        "string_too_short": lambda c: "a non-empty string",
        "too_short": lambda c: f"at least {c['min_length']} item(s)",
        "literal_error": lambda c: f"one of {c['expected']}",
        "finite_number": lambda c: "a finite number",
    }.get(kind)
    if expected is not None:
        return f"{key}: expected {expected(first.get('ctx', {}))}{where}, got {value!r}"
    if kind == "value_error":
        return f"{key}: {str(first['msg']).removeprefix('Value error, ')}"
    if annotation is not None and typing.get_origin(annotation) in _UNIONS:  # not per member type
        return f"{key}: expected {_describe(annotation)}, got {value!r}"
    if annotation is not None and not index:
        return f"{key}: expected {_describe(annotation)}, got {value!r}"
    return f"{key}{where}: {first['msg'][0].lower()}{first['msg'][1:]}, got {value!r}"
