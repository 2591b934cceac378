"""Validation building blocks shared by every config section.

Each section of a config (dataset, model, train, optimizer) is a pydantic model
declared next to the code that uses it; this module holds what they share: a
strict base class that rejects unknown keys with a suggestion, range
constraints whose messages state the allowed interval, and the translation of
pydantic's errors into one line per problem (``optimizer.mu: must be in [0, 1),
got 1.5``).

pydantic v2 is used because it reports the exact location of every error in a
nested, tagged structure (``optimizer`` is a union chosen by ``name``), which a
hand-written validator would have to reimplement.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A user's config is wrong; the message is one line meant for them."""


INTERNAL = {"internal": True}
"""``json_schema_extra`` of a field optrun fills in itself (an optimizer file's hash): never named as allowed."""


class Section(BaseModel):
    """A config section: strict types, no unknown keys, frozen once validated."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def fill_defaults(cls, data: Any) -> Any:
        """Defaults that depend on other keys (a model's type, an optimizer named by its label), filled in
        before validation; ``validate`` also locates errors in the filled-in data. Must be idempotent."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        return cls.fill_defaults(data)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = [k for k, field in cls.model_fields.items() if field.json_schema_extra != INTERNAL]
            for key in data:
                if key not in cls.model_fields:
                    if owners := _owners(cls, str(key)):
                        tag, tags = owners
                        raise PydanticCustomError(
                            "unknown_key",
                            "only for {tag} {tags}; this one is {tag} {mine}",
                            {"key": str(key), "tag": tag, "tags": ", ".join(tags), "mine": str(data.get(tag))},
                        )
                    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.7)
                    close = close or [a for a in allowed if len(str(key)) >= 3 and a.startswith(str(key))][:1]
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key{hint}; allowed keys: {allowed}",
                        {"key": str(key), "hint": hint, "allowed": ", ".join(allowed)},
                    )
        return data


_TAGS: dict[str, set[str]] = {}  # tag -> the keys it is the value of, so error locations can drop tags
_UNIONS: dict[type, tuple[str, tuple[type, ...]]] = {}  # a member -> its union's key and members


def _owners(cls: type, key: str) -> tuple[str, list[str]] | None:
    """Where ``key``, unknown to ``cls``, belongs: the union's tag key and the tags of its members that have it
    (``model.conv`` is only for ``type cnn``); None where no other member has it."""
    tag, members = _UNIONS.get(cls, ("", ()))
    tags = [t for m in members if key in m.model_fields for t in m.model_fields[tag].annotation.__args__]
    return (tag, tags) if tags else None


def tagged_union(members: Iterable[type[Section]], key: str) -> Any:
    """A field type that is one of ``members``, chosen by the value of ``key`` (e.g. an optimizer's name)."""
    members = tuple(members)
    for m in members:
        _UNIONS[m] = (key, members)
        for tag in m.model_fields[key].annotation.__args__:
            _TAGS.setdefault(tag, set()).add(key)
    return Annotated[Union[members], Field(discriminator=key)]  # noqa: UP007 (built at run time)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:g}"


def interval(
    lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False
) -> AfterValidator:
    """A constraint ``value in [lo, hi]`` (either end open) with a message naming the interval."""
    if lo == -math.inf and hi == math.inf:
        raise ValueError("interval needs at least one bound")
    if hi == math.inf:
        allowed = f"> {_fmt(lo)}" if lo_open else f">= {_fmt(lo)}"
    elif lo == -math.inf:
        allowed = f"< {_fmt(hi)}" if hi_open else f"<= {_fmt(hi)}"
    else:
        allowed = f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"

    def check(value: float) -> float:
        above = value > lo if lo_open else value >= lo
        below = value < hi if hi_open else value <= hi
        if not (above and below):
            raise PydanticCustomError("range", "must be {allowed}, got {got}", {"allowed": allowed, "got": value})
        return value

    return AfterValidator(check)


PositiveFloat = Annotated[float, interval(0, lo_open=True)]
NonNegativeFloat = Annotated[float, interval(0)]


def integral(value: Any) -> Any:
    """A float that is a whole number (YAML reads ``1e3`` as 1000.0) as that integer; anything else as it is,
    for the strict integer check to accept or refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(integral)]
PositiveInt = Annotated[Integer, interval(1)]
NonNegativeInt = Annotated[Integer, interval(0)]
UnitOpenFloat = Annotated[float, interval(0, 1, hi_open=True)]  # [0, 1)
Fraction = Annotated[float, interval(0, 1, lo_open=True, hi_open=True)]  # (0, 1)

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "finite_number": "must be a finite number",
}


def describe(value: Any) -> str:
    """A value as an error message quotes it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list | tuple):
        return "an empty list" if not value else (repr(list(value)) if len(repr(list(value))) <= 40 else "a list")
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value!r} ({type(value).__name__})" if isinstance(value, str) else repr(value)


def _strip_tags(loc: Sequence[Any], data: Any) -> list[Any]:
    """Drop the union tags pydantic inserts into locations, by walking the input.

    A part is a tag where the mapping reached has it as the value of its
    discriminator key (``optimizer.name: adam`` has tag ``adam``), even if the
    mapping also has a key of that name.
    """
    path: list[Any] = []
    for part in loc:
        if isinstance(data, Mapping) and any(data.get(key) == part for key in _TAGS.get(part, ())):
            continue  # the tag pydantic adds to the path of a union member
        if (isinstance(data, Mapping) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        ):
            data = data[part]
            path.append(part)
        elif isinstance(data, Mapping) and part in _TAGS:
            continue  # a tag whose key is missing from the input (it failed validation)
        elif part == "[key]":
            continue  # the error is about the mapping key just named
        else:
            path.append(part)
    return path


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    got = describe(err.get("input"))
    if kind == "missing":
        return "is required"
    if kind == "union_tag_not_found":
        return f"needs a {ctx['discriminator']} key"
    if kind == "union_tag_invalid":
        allowed = ctx["expected_tags"].replace("'", "")
        return f"unknown {ctx['discriminator'].strip(chr(39))} '{ctx['tag']}'; choose from: {allowed}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected'].replace(chr(39), '')}, got {got}"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item{'s' if ctx['min_length'] > 1 else ''}, got {got}"
    if kind in _TYPE_MESSAGES:
        return f"{_TYPE_MESSAGES[kind]}, got {got}"
    msg = str(err["msg"])
    return msg[0].lower() + msg[1:]


def format_errors(error: ValidationError, data: Any, prefix: str = "") -> str:
    """One line for the first error (and how many more there are)."""
    errors = error.errors()
    first = errors[0]
    path = _strip_tags(first["loc"], data)
    if "key" in (first.get("ctx") or {}):  # a section-level check about one of its keys
        path.append(first["ctx"]["key"])
    where = _dotted([prefix, *path] if prefix else path)
    line = f"{where}: {_message(first)}" if where else _message(first)
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line


def validate(model: Any, data: Any, prefix: str = "") -> Any:
    """Validate ``data`` with a pydantic model or TypeAdapter, raising ConfigError."""
    try:
        if isinstance(model, type) and issubclass(model, Section):
            data = model.fill_defaults(data)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        return model.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, data, prefix)) from None
