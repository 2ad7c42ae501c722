"""A small generator of random JSON schemas (objects, arrays, bounded strings / integers / numbers, enums, consts,
anyOf), for the constrained-decoding tests: every value it allows is bounded, so a complete answer always fits in a
few hundred tokens."""

from __future__ import annotations

import random

NAMES = ["id", "name", "colour", "shape", "count", "ok", "tags", "size", "note", "x", "y", "kind", "answer"]
ENUM_POOL = ["red", "blue", "a b", 'q"uote', "ünï", 0, 7, -3, 2.5, True, None]


def random_schema(rng: random.Random, depth: int = 0) -> dict:
    kinds = ["string", "integer", "number", "boolean", "null", "enum", "const", "anyOf"]
    if depth < 2:
        kinds += ["array", "object", "object"]
    k = rng.choice(kinds)
    if k == "string":
        s = {"type": "string", "maxLength": rng.randint(1, 12)}
        if rng.random() < 0.3:
            s["minLength"] = rng.randint(0, min(2, s["maxLength"]))
        return s
    if k == "integer":
        lo = rng.randint(-50, 50)
        return {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 1000)}
    if k == "number":
        lo = rng.randint(-10, 10)
        return {"type": "number", "minimum": lo, "maximum": lo + rng.randint(1, 100)}
    if k in ("boolean", "null"):
        return {"type": k}
    if k == "enum":
        return {"enum": rng.sample(ENUM_POOL, rng.randint(1, 4))}
    if k == "const":
        return {"const": rng.choice(["yes", 3, False, None])}
    if k == "anyOf":
        return {"anyOf": [random_schema(rng, 2), random_schema(rng, 2)]}
    if k == "array":
        lo = rng.randint(0, 2)
        return {
            "type": "array",
            "items": random_schema(rng, depth + 1),
            "minItems": lo,
            "maxItems": lo + rng.randint(0, 2),
        }
    names = rng.sample(NAMES, rng.randint(1, 4))
    return {
        "type": "object",
        "properties": {n: random_schema(rng, depth + 1) for n in names},
        "required": [n for n in names if rng.random() < 0.7],
    }


def random_schemas(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [random_schema(rng) for _ in range(n)]
