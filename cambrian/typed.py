"""One typed loader for every configuration: model configs, training recipes, demo settings, CV-Bench build rules
and benchmark options. Built on pydantic (dataclasses validated on construction), so YAML files, ``key=value``
overrides and configs built in code are checked by the same rules:

- unknown keys at any depth are refused, with a did-you-mean (``lora.rank`` -> ``r``);
- types are checked (``micro_batch_size=four``, ``epochs=1.5`` and ``lr=fast`` are errors; a number written the
  way YAML 1.1 reads as a string, ``lr: 1e-3``, is a number);
- ranges and choices are checked (``warmup_ratio=2``, ``scheduler=cosin``);
- the first mistake is reported as one line naming the field (``ConfigError``, a ``UserError``).

Field types are written with the helpers below (``Int(ge=1)``, ``Num(gt=0)``, ``Bool``, ``Str``, ``Choice(...)``,
``OptInt`` ...), whose messages read "``lr must be > 0, got -1.0``". A config class is a standard dataclass
decorated with :func:`typed_config`.

This module is part of the config layer: it imports neither torch nor anything else from cambrian but ``errors``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from pathlib import Path
from typing import Annotated, Any

import typing_extensions
import yaml
from pydantic import BeforeValidator, ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic_core import PydanticCustomError

from .errors import UserError

STRICT = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class ConfigError(UserError, ValueError):
    """A config / override mistake; the message names the field."""


def typed_config(cls=None, *, label: str | None = None, **kwargs):
    """``@typed_config`` on a dataclass body: construction validates every field (unknown keywords refused).
    ``label``: prefix of the error messages (``sampling: top_p must be ...``); ``kwargs`` go to pydantic's
    dataclass (``frozen=True``)."""
    prefix = f"{label}: " if label else ""

    def wrap(c):
        c = _pydantic_dataclass(c, config=STRICT, **kwargs)
        init = c.__init__

        def __init__(self, *args, **kw):  # a mistake in code reads like one in a file: one ConfigError line
            try:
                init(self, *args, **kw)
            except ValidationError as e:
                raise ConfigError(prefix + format_error(e, c)) from None

        __init__.__doc__ = init.__doc__
        c.__init__ = __init__
        return c

    return wrap if cls is None else wrap(cls)


def did_you_mean(key: str, valid) -> str:
    """`` (did you mean 'lr'?)`` for the closest valid key, else the list of valid keys."""
    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    if not close:  # an abbreviation or a longer spelling: rank -> r, lr_rate -> lr
        close = [v for v in valid if str(key).startswith(v) or v.startswith(str(key))][:1]
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"


# ---- field types ---------------------------------------------------------------------------------------------
def _fail(message: str, value) -> None:
    raise PydanticCustomError("cambrian", "{message}", {"message": f"{message}, got {value!r}"})


def _range_text(ge=None, gt=None, le=None, lt=None) -> str:
    def num(v) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"

    ops = ((">", gt), (">=", ge), ("<", lt), ("<=", le))
    return " and ".join(f"{op} {num(v)}" for op, v in ops if v is not None)


def _in_range(v, ge=None, gt=None, le=None, lt=None) -> bool:
    return not (
        (ge is not None and v < ge)
        or (gt is not None and v <= gt)
        or (le is not None and v > le)
        or (lt is not None and v >= lt)
    )


def _whole(optional: bool, bounds: dict, none_means: str | None):
    null = f" or null ({none_means})" if none_means else (" or null" if optional else "")
    rng = _range_text(**bounds)

    def check(v):
        if v is None and optional:
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)  # YAML "4.0"
        if isinstance(v, bool) or not isinstance(v, int):
            _fail(f"must be a whole number{null}", v)
        if not _in_range(v, **bounds):
            _fail(f"must be a whole number {rng}{null}", v)
        return v

    return check


def _number(optional: bool, bounds: dict):
    rng = _range_text(**bounds)

    def check(v):
        if v is None and optional:
            return None
        if isinstance(v, str):  # YAML 1.1 reads 1e-3 (no dot) as a string; numbers only
            try:
                v = float(v)
            except ValueError:
                _fail(f"must be a number{' or null' if optional else ''}", v)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            _fail(f"must be a number{' or null' if optional else ''}", v)
        v = float(v)
        if v != v or not _in_range(v, **bounds):
            _fail(f"must be {rng or 'a number'}", v)
        return v

    return check


def Int(*, ge=None, gt=None, le=None, lt=None):
    return Annotated[int, BeforeValidator(_whole(False, dict(ge=ge, gt=gt, le=le, lt=lt), None))]


def OptInt(*, ge=None, gt=None, le=None, lt=None, none_means: str | None = None):
    return Annotated[int | None, BeforeValidator(_whole(True, dict(ge=ge, gt=gt, le=le, lt=lt), none_means))]


def Num(*, ge=None, gt=None, le=None, lt=None):
    return Annotated[float, BeforeValidator(_number(False, dict(ge=ge, gt=gt, le=le, lt=lt)))]


def OptNum(*, ge=None, gt=None, le=None, lt=None):
    return Annotated[float | None, BeforeValidator(_number(True, dict(ge=ge, gt=gt, le=le, lt=lt)))]


def _bool(v):
    if not isinstance(v, bool):
        _fail("must be true or false", v)
    return v


def _str(optional: bool):
    def check(v):
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v.strip():
            _fail(f"must be a non-empty string{' or null' if optional else ''}", v)
        return v

    return check


def _str_list(v):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        _fail("must be a list of strings", v)
    return list(v)


def _opt_str_list(v):
    return None if v is None else _str_list(v)


def _nonempty_str_tuple(v):
    if isinstance(v, str):
        v = (v,)
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x for x in v):
        _fail("must be non-empty strings", v)
    return tuple(v)


def Choice(*choices):
    def check(v):
        if v not in choices or isinstance(v, bool):
            hint = did_you_mean(v, [c for c in choices if isinstance(c, str)]) if isinstance(v, str) else ""
            raise PydanticCustomError(
                "cambrian", "{message}", {"message": f"must be one of {', '.join(map(repr, choices))}, got {v!r}{hint}"}
            )
        return v

    return Annotated[Any, BeforeValidator(check)]


def _mapping(v):
    if v is None:
        return {}
    if not isinstance(v, dict):
        _fail("must be a mapping", v)
    return v


Bool = Annotated[bool, BeforeValidator(_bool)]
Str = Annotated[str, BeforeValidator(_str(False))]
OptStr = Annotated[str | None, BeforeValidator(_str(True))]
StrList = Annotated[list[str], BeforeValidator(_str_list)]
OptStrList = Annotated[list[str] | None, BeforeValidator(_opt_str_list)]
StrTuple = Annotated[tuple[str, ...], BeforeValidator(_nonempty_str_tuple)]  # one string or several, none empty
Mapping = Annotated[dict, BeforeValidator(_mapping)]


# ---- errors ----------------------------------------------------------------------------------------------------
def _loc_text(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-before", "function-after", "nullable", "dict", "list", "tuple") and not str(
            part
        ).startswith(("function-", "typed-dict", "dataclass")):
            out += ("." if out else "") + str(part)
    return out


def _fields_at(cls, loc) -> list[str] | None:
    """The valid key names of the (typed-dict / dataclass) node at ``loc`` under ``cls``."""
    tp: Any = cls
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args else Any
            continue
        hints = _hints(tp)
        if hints is None or part not in hints:
            return None
        tp = hints[part]
    hints = _hints(_unwrap(tp))
    return None if hints is None else list(hints)


def _unwrap(tp):
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp


def _hints(tp) -> dict | None:
    if dataclasses.is_dataclass(tp) or typing_extensions.is_typeddict(tp):
        try:
            return typing_extensions.get_type_hints(tp, include_extras=True)
        except Exception:  # noqa: BLE001 - an annotation that does not evaluate here: fall back to the names
            return dict.fromkeys(getattr(tp, "__annotations__", {}))
    return None


def format_error(e: ValidationError, cls) -> str:
    """The first error of ``e`` as one phrase naming the field (``lora.r must be a whole number >= 1, got 0``)."""
    err = e.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    kind = err["type"]
    name = _loc_text(loc)
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        key, parent = loc[-1], loc[:-1]
        valid = _fields_at(cls, parent) or []
        where = _loc_text(parent) or getattr(cls, "__name__", "config")
        inner = f" ({name})" if parent else ""
        return f"unknown {where} keys [{key!r}]{inner}{did_you_mean(key, valid)}"
    if kind in ("missing", "missing_argument"):
        parent = _loc_text(loc[:-1]) or getattr(cls, "__name__", "config")
        return f"{parent} needs a {loc[-1]!r}"
    msg = err["msg"]
    if kind == "cambrian":
        return f"{name} {msg}" if name else msg
    if msg.startswith("Value error, "):  # raised by __post_init__ / a validator with its own wording
        msg = msg[len("Value error, ") :]
        return f"{name}: {msg}" if name else msg
    got = err.get("input")
    return f"{name}: {msg[0].lower() + msg[1:]}, got {got!r}" if name else msg


def build(cls, data: Any, where: str | None = None):
    """``cls(**data)`` with every mistake as one ``ConfigError`` line prefixed by ``where`` (a file name)."""
    prefix = f"{where}: " if where else ""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{prefix}keys must be strings, got {bad[0]!r}")
    try:
        return cls(**data)
    except ValidationError as e:  # a pydantic class not made with typed_config
        raise ConfigError(prefix + format_error(e, cls)) from None
    except ConfigError as e:
        raise ConfigError(prefix + str(e)) from None


def check_value(tp, value, name: str):
    """One value against one field type (``check_value(Int(ge=1), v, "image_size")``), the same messages."""
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(tp).validate_python(value)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise ConfigError(f"{name} {err['msg']}" if err["type"] == "cambrian" else f"{name}: {err['msg']}") from None


# ---- files and overrides -------------------------------------------------------------------------------------
MAX_CONFIG_BYTES = 16 << 20  # a config / recipe file larger than this is refused before it is read
MAX_YAML_NODES = 200_000  # values of a YAML document with its aliases expanded (a "billion laughs" bomb: 10^9)


def read_config_text(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The text of a config file: a regular file (a FIFO or a device would block or never end) of at most
    ``max_bytes``, in UTF-8. Opened without blocking and checked on the open file, so it cannot be swapped."""
    import os
    import stat

    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(f"{path}: {kind} (a config must be a file)")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfigError(f"{path}: larger than {max_bytes} bytes, too large for a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document whose aliases expand to more than ``MAX_YAML_NODES`` values: the
    alias graph is small, but anything walking the loaded data (validation, copying) walks the expanded tree."""

    def compose_document(self):
        node = super().compose_document()
        if node is not None:
            _check_expanded_size(node, MAX_YAML_NODES)
        return node


def _check_expanded_size(root, limit: int) -> None:
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes and not done:
            continue
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [x for kv in node.value for x in kv]
        if not done:
            sizes[id(node)] = -1  # being expanded: a recursive alias meets it again
            stack.append((node, True))
            for c in children:
                if sizes.get(id(c)) == -1:
                    raise ConfigError("a YAML alias refers to a value that contains it (recursive document)")
                stack.append((c, False))
            continue
        n = 1 + sum(sizes[id(c)] for c in children)
        if n > limit:
            raise ConfigError(f"the YAML document expands to more than {limit} values through its aliases (&/*)")
        sizes[id(node)] = n


def load_yaml(text: str):
    """``yaml.safe_load`` with the alias expansion bounded (``MAX_YAML_NODES``)."""
    return yaml.load(text, Loader=_BoundedLoader)


def read_mapping(path: str | Path) -> dict:
    """A YAML (or JSON) file holding a mapping (a bounded regular file, :func:`read_config_text`; YAML aliases bounded,
    :func:`load_yaml`); syntax errors name the line and column."""
    path = Path(path)
    text = read_config_text(path)
    try:
        data = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def parse_value(raw: str, where: str = "value"):
    """An override's value, read as YAML (``2e-5``, ``true``, ``[a, b]``, ``{path: x}``); empty means null. Text
    that is not valid YAML (``[{path: x``) is an error, never silently taken as a string."""
    if raw == "":
        return None
    try:
        return load_yaml(raw)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: {raw!r} is not a valid YAML value ({problem})") from None


def apply_overrides(data: dict, overrides: list[str], what: str = "override") -> dict:
    """``["lr=2e-5", "lora.enabled=true"]`` -> nested update of a copy of ``data``."""
    data = dict(data)
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"{what} {ov!r} is not key=value")
        key, raw = ov.split("=", 1)
        parts = [p.strip() for p in key.strip().split(".")]
        if not all(parts):
            raise ConfigError(f"{what} {ov!r}: empty key")
        value = parse_value(raw, f"{what} {key.strip()}")
        cur = data
        for p in parts[:-1]:
            nxt = cur.get(p)
            nxt = dict(nxt) if isinstance(nxt, dict) else {}
            cur[p] = nxt
            cur = nxt
        cur[parts[-1]] = value
    return data
