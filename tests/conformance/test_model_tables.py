"""The server's tables, written by hand from the model, match the model in
the installed botocore: each operation's HTTP binding and every input
shape's members, locations and constraints."""

import json
import subprocess

import pytest

IGNORED_KEYS = {"documentation", "box", "sensitive", "idempotencyToken"}


@pytest.fixture(scope="module")
def dump(test_server_binary):
    out = subprocess.run([test_server_binary, "--dump-model"], check=True, capture_output=True, timeout=60)
    return json.loads(out.stdout)


def reachable(raw_model, name, seen):
    if name in seen:
        return
    seen.add(name)
    shape = raw_model["shapes"][name]
    for member in shape.get("members", {}).values():
        reachable(raw_model, member["shape"], seen)
    for key in ("member", "key", "value"):
        if key in shape:
            reachable(raw_model, shape[key]["shape"], seen)


def comparable(shape):
    """A model shape without documentation and presentation-only traits."""
    out = {k: v for k, v in shape.items() if k not in IGNORED_KEYS}
    if "members" in out:
        out["members"] = {
            name: {k: v for k, v in member.items() if k not in IGNORED_KEYS}
            for name, member in out["members"].items()
        }
    if "required" in out:
        out["required"] = sorted(out["required"])
    return out


def test_the_operation_table_matches_the_model(dump, raw_model):
    expected = {
        name: {
            "method": op["http"]["method"],
            "requestUri": op["http"]["requestUri"],
            "responseCode": op["http"]["responseCode"],
            "input": op["input"]["shape"],
        }
        for name, op in raw_model["operations"].items()
    }
    assert dump["operations"] == expected
    assert len(expected) == 24


def test_the_shape_tables_cover_every_input_shape(dump, raw_model):
    seen = set()
    for op in raw_model["operations"].values():
        reachable(raw_model, op["input"]["shape"], seen)
    assert set(dump["shapes"]) == seen


def test_each_shape_table_matches_the_model(dump, raw_model):
    mismatches = {}
    for name, ours in dump["shapes"].items():
        theirs = comparable(raw_model["shapes"][name])
        ours = dict(ours, required=sorted(ours["required"])) if "required" in ours else ours
        if ours != theirs:
            mismatches[name] = {"server": ours, "model": theirs}
    assert not mismatches, json.dumps(mismatches, indent=1)
