"""A settings dataclass as JSON and back: the field names, types, defaults, help, choices and
domains of a learner's or dataset's ``Settings``, so that a config can be checked against them
without importing the module (and torch) that defines them (:mod:`metarec.config.schema_cache`).

A class of :mod:`metarec.config` itself (``LearnerConfig``, ``DataConfig``, the domains) is
named, not described: those modules are imported anyway, and stay light. Any other class is
described field by field over its nearest such base, whose ``__post_init__`` it keeps. Its own
``__post_init__`` (a check across settings: code, which JSON cannot hold) is described only by
values known to pass it: those of the instances the full catalog built (the defaults, with the
entry's own ``name``, and the default of each nested section). The rebuilt class passes those
and, for any other values, calls ``skipped`` with its name instead, so its caller knows a check
was left out.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, Union

LIGHT = "metarec.config."  # the modules whose classes are imported, not described
_SCALARS = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "None": type(None),
    "Any": Any,
    "list": list,
    "dict": dict,
    "tuple": tuple,
}
_GENERICS = {"list": list, "dict": dict, "tuple": tuple}
_PARAMS = ("init", "repr", "eq", "order", "unsafe_hash", "frozen")


class Unsupported(TypeError):
    """A setting this module cannot describe: a type, default or domain it does not know."""


def _ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_light(cls: type) -> bool:
    return cls.__module__.startswith(LIGHT)


def describe(cls: type, name: str | None = None) -> dict:
    """``{"settings": ref, "classes": {ref: description}}``: ``cls`` and every dataclass its
    fields hold that is not light; raises ``Unsupported`` for what JSON cannot say. ``name``:
    the registered name, the ``name`` setting of every config that chooses the entry."""
    classes: dict[str, dict] = {}
    _describe_class(cls, classes, {"name": name} if name is not None else {})
    return {"settings": _ref(cls), "classes": classes}


def _describe_class(cls: type, classes: dict, values: dict | None = None) -> str:
    ref = _ref(cls)
    if _is_light(cls) or ref in classes:
        return ref
    classes[ref] = {}  # taken before the fields, so a class that nests itself ends
    base = next((k for k in cls.__mro__[1:] if dataclasses.is_dataclass(k) and _is_light(k)), None)
    owner = next((k for k in cls.__mro__ if "__post_init__" in vars(k)), None)
    hints = typing.get_type_hints(cls)
    fields = []
    for spec in dataclasses.fields(cls):
        if not (spec.init and spec.repr and spec.compare and spec.hash is None) or spec.kw_only:
            raise Unsupported(f"{ref}: field '{spec.name}' has non-default field() options")
        described = {
            "name": spec.name,
            "type": _type_json(hints[spec.name], classes),
            "metadata": {
                key: _value_json(value, classes, settings=False)
                for key, value in spec.metadata.items()
            },
        }
        if spec.default is not dataclasses.MISSING:
            described["default"] = _value_json(spec.default, classes)
        elif spec.default_factory is not dataclasses.MISSING:
            described["factory"] = _value_json(spec.default_factory(), classes)
        fields.append(described)
    own_check = owner is not None and (base is None or owner not in base.__mro__)
    try:
        passes = [_reprs(cls(**(values or {})))]
    except Exception:  # the defaults fail the check: only other known values pass
        passes = []
    params = cls.__dataclass_params__
    classes[ref] = {
        "name": cls.__name__,
        "qualname": cls.__qualname__,
        "doc": cls.__doc__,
        "base": _ref(base) if base is not None else None,
        "params": {name: getattr(params, name) for name in _PARAMS},
        "fields": fields,
        "own_check": own_check,
        "passes": classes[ref].get("passes", []) + passes,
    }
    return ref


def _type_json(tp, classes: dict):
    for name, scalar in _SCALARS.items():
        if tp is scalar:
            return name
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        kind = "union" if origin is Union else "or"  # Union[a, b] and a | b print differently
        return {kind: [_type_json(arg, classes) for arg in args]}
    if origin in _GENERICS.values() and args:
        return {origin.__name__: [_type_json(arg, classes) for arg in args]}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return {"class": _describe_class(tp, classes)}
    raise Unsupported(f"type {tp!r}")


def _value_json(value, classes: dict, settings: bool = True):
    """``value`` as JSON; a dataclass instance only of a light class (a domain), or with
    ``settings`` of a settings class (a nested section's default)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_value_json(item, classes, settings) for item in value]
    if isinstance(value, tuple):
        return {"tuple": [_value_json(item, classes, settings) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: _value_json(item, classes, settings) for key, item in value.items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not (settings or _is_light(type(value))):
            raise Unsupported(f"{value!r}: a class outside {LIGHT}* (its methods stay in code)")
        ref = _describe_class(type(value), classes)
        if ref in classes:  # built by the full catalog, so its own check passed these values
            classes[ref].setdefault("passes", []).append(_reprs(value))
        return {
            "instance": ref,
            "values": {
                spec.name: _value_json(getattr(value, spec.name), classes)
                for spec in dataclasses.fields(value)
            },
        }
    raise Unsupported(f"value {value!r}")


def _reprs(instance) -> list[str]:
    return [repr(getattr(instance, spec.name)) for spec in dataclasses.fields(instance)]


def rebuild(described: dict, skipped: Callable[[str], None]) -> type:
    """The settings dataclass that :func:`describe` described: the same class name, fields,
    types, defaults and metadata, over the same light base."""
    built: dict[str, type] = {}
    return _class(described["settings"], described["classes"], built, skipped)


def _class(ref: str, classes: dict, built: dict, skipped: Callable[[str], None]) -> type:
    if ref in built:
        return built[ref]
    if ref not in classes:
        module, _, qualname = ref.partition(":")
        if not module.startswith(LIGHT):
            raise Unsupported(f"class {ref} is neither described nor in {LIGHT}*")
        return functools.reduce(getattr, qualname.split("."), importlib.import_module(module))
    spec = classes[ref]
    fields = []
    for field_spec in spec["fields"]:
        options = {"metadata": _values(field_spec["metadata"], classes, built, skipped)}
        if "default" in field_spec:
            options["default"] = _value(field_spec["default"], classes, built, skipped)
        elif "factory" in field_spec:
            factory = field_spec["factory"]
            options["default_factory"] = lambda f=factory: _value(f, classes, built, skipped)
        field_type = _type(field_spec["type"], classes, built, skipped)
        fields.append((field_spec["name"], field_type, dataclasses.field(**options)))
    namespace = {"__doc__": spec["doc"]}
    if spec["own_check"]:
        namespace["__post_init__"] = _left_out(spec, skipped)
    bases = (_class(spec["base"], classes, built, skipped),) if spec["base"] else ()
    cls = dataclasses.make_dataclass(
        spec["name"], fields, bases=bases, namespace=namespace, **spec["params"]
    )
    cls.__qualname__ = spec["qualname"]
    built[ref] = cls
    return cls


def _left_out(spec: dict, skipped: Callable[[str], None]):
    """A ``__post_init__`` for a check that only the class's own code can run: the values
    that passed it in the full catalog pass; any others are ``skipped``."""

    def __post_init__(self) -> None:
        if _reprs(self) not in spec["passes"]:
            skipped(spec["qualname"])

    return __post_init__


def _type(described, classes: dict, built: dict, skipped: Callable[[str], None]):
    if isinstance(described, str):
        return _SCALARS[described]
    (kind, inner), *_ = described.items()
    if kind == "class":
        return _class(inner, classes, built, skipped)
    args = tuple(_type(arg, classes, built, skipped) for arg in inner)
    if kind == "union":
        return Union[args]  # noqa: UP007 - rebuilds the Union the class was written with
    if kind == "or":
        return functools.reduce(operator.or_, args)
    return _GENERICS[kind][args]


def _value(described, classes: dict, built: dict, skipped: Callable[[str], None]):
    if isinstance(described, list):
        return [_value(item, classes, built, skipped) for item in described]
    if not isinstance(described, dict):
        return described
    if "tuple" in described:
        return tuple(_value(item, classes, built, skipped) for item in described["tuple"])
    if "dict" in described:
        return _values(described["dict"], classes, built, skipped)
    cls = _class(described["instance"], classes, built, skipped)
    return cls(**_values(described["values"], classes, built, skipped))


def _values(described: dict, classes: dict, built: dict, skipped: Callable[[str], None]) -> dict:
    return {key: _value(item, classes, built, skipped) for key, item in described.items()}


def to_json(value):
    """A plain value (numbers, strings, lists, tuples and dicts of them, a domain) as JSON."""
    return _value_json(value, {}, settings=False)


def from_json(described):
    """The value :func:`to_json` described."""
    return _value(described, {}, {}, lambda name: None)
