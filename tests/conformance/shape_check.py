"""Checks JSON from the wire against a shape of botocore's model.

The check runs on the raw body, not on what botocore parsed from it, since
the parser silently drops members it does not know: a misspelt member name
would otherwise go unnoticed. It checks that required members are present,
that no unknown member appears, that every value has the model's type
(timestamps are epoch seconds, the rest-json default), that enums hold one
of their values, that unions have exactly one member, and the length and
range traits.
"""

import re


def check(shape, value, path="$"):
    """Every way `value` breaks `shape`, as readable strings."""
    problems = []
    _check(shape, value, path, problems)
    return problems


def _check(shape, value, path, problems):
    kind = shape.type_name
    meta = shape.metadata
    handler = {
        "structure": _structure,
        "list": _list,
        "map": _map,
        "string": _string,
        "integer": _number,
        "long": _number,
        "boolean": _boolean,
        "timestamp": _timestamp,
    }.get(kind)
    if handler is None:
        problems.append(f"{path}: shape type {kind} is not checked")
        return
    handler(shape, value, path, problems, meta)


def _structure(shape, value, path, problems, meta):
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object, got {value!r}")
        return
    members = shape.members
    for name in value:
        if name not in members:
            problems.append(f"{path}: unknown member {name!r}")
    for name in shape.required_members:
        if value.get(name) is None:
            problems.append(f"{path}: required member {name!r} is missing")
    for name, member in members.items():
        if value.get(name) is not None:
            _check(member, value[name], f"{path}.{name}", problems)
    if meta.get("union"):
        present = [n for n in value if value[n] is not None]
        if len(present) != 1:
            problems.append(f"{path}: a union must have exactly one member, got {present}")


def _list(shape, value, path, problems, meta):
    if not isinstance(value, list):
        problems.append(f"{path}: expected a list, got {value!r}")
        return
    _length(len(value), meta, path, problems)
    for index, item in enumerate(value):
        _check(shape.member, item, f"{path}[{index}]", problems)


def _map(shape, value, path, problems, meta):
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a map, got {value!r}")
        return
    _length(len(value), meta, path, problems)
    for key, item in value.items():
        _check(shape.key, key, f"{path}.<key {key!r}>", problems)
        _check(shape.value, item, f"{path}[{key!r}]", problems)


def _string(shape, value, path, problems, meta):
    if not isinstance(value, str):
        problems.append(f"{path}: expected a string, got {value!r}")
        return
    if shape.enum and value not in shape.enum:
        problems.append(f"{path}: {value!r} is not one of {shape.enum}")
    _length(len(value), meta, path, problems)
    pattern = meta.get("pattern")
    if pattern and not re.fullmatch(python_pattern(pattern), value):
        problems.append(f"{path}: {value!r} does not match {pattern}")


def python_pattern(pattern):
    """The model's pattern for Python's `re`, which lacks Unicode classes:
    ASCII stand-ins are enough for what the server sends. Matched whole, as
    the server matches inputs."""
    return pattern.replace(r"\p{L}", "a-zA-Z").replace(r"\p{Z}", " ").replace(r"\p{N}", "0-9")


def _number(shape, value, path, problems, meta):
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{path}: expected an integer, got {value!r}")
        return
    if "min" in meta and value < meta["min"]:
        problems.append(f"{path}: {value} is below {meta['min']}")
    if "max" in meta and value > meta["max"]:
        problems.append(f"{path}: {value} is above {meta['max']}")
    limit = 2**31 if shape.type_name == "integer" else 2**63
    if not -limit <= value < limit:
        problems.append(f"{path}: {value} does not fit a {shape.type_name}")


def _boolean(shape, value, path, problems, meta):
    if not isinstance(value, bool):
        problems.append(f"{path}: expected a boolean, got {value!r}")


def _timestamp(shape, value, path, problems, meta):
    fmt = meta.get("timestampFormat") or shape.serialization.get("timestampFormat") or "unixTimestamp"
    if fmt != "unixTimestamp":
        problems.append(f"{path}: the suite checks epoch-seconds timestamps only, model says {fmt}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{path}: expected epoch seconds, got {value!r}")
    elif not 946684800 <= value <= 4102444800:
        problems.append(f"{path}: {value} is not a plausible epoch-seconds time")


def _length(length, meta, path, problems):
    if "min" in meta and length < meta["min"]:
        problems.append(f"{path}: length {length} is below {meta['min']}")
    if "max" in meta and length > meta["max"]:
        problems.append(f"{path}: length {length} is above {meta['max']}")
