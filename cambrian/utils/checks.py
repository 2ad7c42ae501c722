"""Typed-config checks shared by every YAML-driven tool (training recipes, curation recipes): field type / range
checks whose errors name the field, unknown keys rejected with a did-you-mean, YAML files read with one-line
errors. Import-light (difflib, yaml) and below every other layer, so ``data/`` and ``train/`` both use it."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A recipe / override mistake; the message names the field."""


def did_you_mean(key: str, valid) -> str:
    """`` (did you mean 'lr'?)`` for the closest valid key, else the list of valid keys."""
    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    if not close:  # an abbreviation or a longer spelling: rank -> r, lr_rate -> lr
        close = [v for v in valid if str(key).startswith(v) or v.startswith(str(key))][:1]
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"


def check_mapping(name: str, value, valid) -> dict:
    """``value`` as a dict; with ``valid`` keys given, an unknown key is an error with a did-you-mean."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping, got {value!r}")
    if valid is not None:
        for k in value:
            if k not in valid:
                raise ConfigError(f"unknown {name} keys [{k!r}] ({name}.{k}){did_you_mean(k, valid)}")
    return dict(value)



class Check:
    """Type / range checks that name the field: ``int_``, ``float_``, ``bool_``, ``str_``, ``str_list``, ``choice``."""

    @staticmethod
    def int_(name, value, low=None, optional=False, none_means=None):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                null = f" or null ({none_means})" if none_means else (" or null" if optional else "")
                raise ConfigError(f"{name} must be a whole number{null}, got {value!r}")
        if low is not None and value < low:
            null = f" or null ({none_means})" if none_means else ""
            raise ConfigError(f"{name} must be a whole number >= {low}{null}, got {value!r}")
        return value

    @staticmethod
    def float_(name, value, low=None, high=None, low_open=False, high_open=False, optional=False):
        if value is None and optional:
            return None
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string; numbers only
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number{' or null' if optional else ''}, got {value!r}")
        value = float(value)
        bad = value != value or (low is not None and (value <= low if low_open else value < low)) or \
            (high is not None and (value >= high if high_open else value > high))
        if bad:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
            raise ConfigError(f"{name} must be {' and '.join(x for x in (lo, hi) if x) or 'a number'}, got {value!r}")
        return value

    @staticmethod
    def bool_(name, value):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value

    @staticmethod
    def str_(name, value, optional=False):
        if value is None and optional:
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string{' or null' if optional else ''}, got {value!r}")
        return value

    @staticmethod
    def str_list(name, value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return list(value)

    @staticmethod
    def choice(name, value, choices):
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
                              + (did_you_mean(value, choices) if isinstance(value, str) else ""))
        return value

def load_yaml_mapping(path: str | os.PathLike) -> dict:
    """A YAML file whose top level is a mapping; a syntax error names the file, line and column (ConfigError)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got a {type(data).__name__}")
    return data
