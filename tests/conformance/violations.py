"""Requests that break each input constraint of the model, one at a time.

Walking an operation's input shape in botocore's model gives every
constraint site: required members, string and collection lengths, value
ranges, patterns, enums, map keys and values, and unions. For each one the
walk takes the operation's valid baseline input (inputs.py) and breaks that
one constraint, and says which field the server must name and in which
words. It also reports the sites the baseline gave no value to break, so a
test can insist there are none.
"""

import copy
from dataclasses import dataclass

# A value that breaks each of the model's patterns.
PATTERN_VIOLATIONS = {
    r"[^\s]+": "   ",
    r"[a-zA-Z0-9-_]+": "bad name!",
    r"arn:aws[a-z\-]*:iam::[0-9]{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+": "arn:aws:iam::12345:role/short-account",
    r"[a-zA-Z0-9_\-/.#]+": "bad group!",
    r"[^:*]*": "bad:stream",
    r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)": "bad#tag",
    (
        r"arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:"
        r"\d{12}:(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|"
        r"code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-"
        r"[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|(capacity-provider|network-connector|"
        r"microvm-image):[a-zA-Z0-9-_]+)"
    ): "arn:aws:lambda:us-east-1:000000000000:microvm:not-taggable",
}

MISSING = object()
DELETE = object()


@dataclass
class Case:
    """One request that breaks one constraint."""

    operation: str
    params: dict
    path: str
    phrase: str
    site: tuple
    map_prefix: str = ""

    @property
    def id(self):
        return f"{self.operation}:{self.site[0]}:{self.site[1]}"

    def expected(self):
        """What the ValidationException message must contain."""
        if self.map_prefix:
            return [f"Value at '{self.path}' failed to satisfy constraint: {self.map_prefix}: [", self.phrase]
        return [f"Value at '{self.path}' failed to satisfy constraint: {self.phrase}"]


def with_value(params, keys, value):
    """A deep copy of `params` with the member at `keys` set (or deleted)."""
    out = copy.deepcopy(params)
    target = out
    for key in keys[:-1]:
        target = target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return out


def join(path, name):
    return f"{path}.{name}" if path else name


def lengthen(value, length):
    """A string of exactly `length` characters that starts like `value`."""
    base = value if isinstance(value, str) else ""
    return (base + "a" * length)[:length] if len(base) < length else base[:length]


class Walk:
    """The constraint sites of one operation and the cases that break them."""

    def __init__(self, operation, baseline):
        self.operation = operation
        self.baseline = baseline
        self.expected_sites = set()
        self.cases = []

    def case(self, keys, value, path, phrase, site, map_prefix=""):
        params = with_value(self.baseline, keys, value)
        self.cases.append(Case(self.operation, params, path, phrase, site, map_prefix))

    def site(self, norm, kind):
        self.expected_sites.add((norm, kind))
        return (norm, kind)

    def structure(self, shape, value, keys, path, norm, top=False):
        present = value is not MISSING
        for name, member in shape.members.items():
            m_keys, m_path, m_norm = keys + [name], join(path, name), join(norm, name)
            is_label = top and member.serialization.get("location") == "uri"
            if name in shape.required_members and not is_label:
                site = self.site(m_norm, "required")
                if present:
                    self.case(m_keys, DELETE, m_path, "Member must not be null", site)
            child = value.get(name, MISSING) if present else MISSING
            self.shape(member, child, m_keys, m_path, m_norm)
        if shape.metadata.get("union"):
            site = self.site(norm, "union")
            if present:
                self.case(keys, {}, path, "Member must have exactly one of its members set", site)

    def shape(self, shape, value, keys, path, norm):
        kind = shape.type_name
        if kind == "structure":
            self.structure(shape, value, keys, path, norm)
        elif kind == "list":
            self.list(shape, value, keys, path, norm)
        elif kind == "map":
            self.map(shape, value, keys, path, norm)
        elif kind == "string":
            for broken, phrase, site_kind in string_breaks(shape, value):
                site = self.site(norm, site_kind)
                if value is not MISSING:
                    self.case(keys, broken, path, phrase, site)
        elif kind in ("integer", "long"):
            for broken, phrase, site_kind in number_breaks(shape):
                site = self.site(norm, site_kind)
                if value is not MISSING:
                    self.case(keys, broken, path, phrase, site)

    def list(self, shape, value, keys, path, norm):
        meta = shape.metadata
        present = value is not MISSING
        if meta.get("min", 0) > 0:
            site = self.site(norm, "min")
            if present:
                self.case(keys, [], path, f"Member must have length greater than or equal to {meta['min']}", site)
        if "max" in meta:
            site = self.site(norm, "max")
            if present and value:
                too_many = [copy.deepcopy(value[0]) for _ in range(meta["max"] + 1)]
                self.case(keys, too_many, path, f"Member must have length less than or equal to {meta['max']}", site)
        elements = value if present and value else [MISSING]
        for index, element in enumerate(elements):
            self.shape(shape.member, element, keys + [index], f"{path}.{index + 1}.member", f"{norm}.*")

    def map(self, shape, value, keys, path, norm):
        meta = shape.metadata
        present = value is not MISSING and bool(value)
        sample = next(iter(value.values())) if present else None
        if meta.get("min", 0) > 0:
            site = self.site(norm, "min")
            if present:
                self.case(keys, {}, path, f"Member must have length greater than or equal to {meta['min']}", site)
        if "max" in meta:
            site = self.site(norm, "max")
            if present:
                too_many = {f"k{i}": sample for i in range(meta["max"] + 1)}
                self.case(keys, too_many, path, f"Member must have length less than or equal to {meta['max']}", site)
        for broken, phrase, kind in string_breaks(shape.key, "k"):
            site = self.site(f"{norm}.<key>", kind)
            if present:
                self.case(keys, {broken: sample}, path, phrase, site, "Map keys must satisfy constraint")
        for broken, phrase, kind in string_breaks(shape.value, sample if present else MISSING):
            site = self.site(f"{norm}.<value>", kind)
            if present:
                self.case(keys, {"k": broken}, path, phrase, site, "Map value must satisfy constraint")


def string_breaks(shape, value):
    """(broken value, phrase, site kind) for each constraint of a string."""
    meta = shape.metadata
    if shape.enum:
        yield "NOT_A_VALUE", "Member must satisfy enum value set: [", "enum"
        return
    if meta.get("min", 0) > 0:
        yield "a" * (meta["min"] - 1), f"Member must have length greater than or equal to {meta['min']}", "min"
    if "max" in meta:
        yield lengthen(value, meta["max"] + 1), f"Member must have length less than or equal to {meta['max']}", "max"
    if "pattern" in meta:
        pattern = meta["pattern"]
        yield PATTERN_VIOLATIONS[pattern], f"Member must satisfy regular expression pattern: {pattern}", "pattern"


def number_breaks(shape):
    """(broken value, phrase, site kind) for each bound of a number."""
    meta = shape.metadata
    if "min" in meta:
        yield meta["min"] - 1, f"Member must have value greater than or equal to {meta['min']}", "min"
    if "max" in meta:
        yield meta["max"] + 1, f"Member must have value less than or equal to {meta['max']}", "max"


def walk_operation(model, name, baseline):
    """The walk of one operation's input."""
    walk = Walk(name, baseline)
    walk.structure(model.operation_model(name).input_shape, baseline, [], "", "", top=True)
    return walk


def all_walks(model, baselines):
    return [walk_operation(model, name, baselines[name]) for name in model.operation_names]
