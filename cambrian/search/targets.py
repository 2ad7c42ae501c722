"""Target extractors: which objects does a question need to see? V*'s answering model lists them itself after a
trained refusal; ours are not trained to, so the default reads them off the question with rules.

:class:`RuleTargets` takes the question's first sentence that ends in "?" (else its first line), and returns the
noun phrases that follow "the" (up to a preposition, a verb or punctuation), dropping the attribute being asked
about ("the color of the X" -> X) and the words of a relation ("on the left side of the Y" -> Y)::

    What is the color of the woman's bag?          -> ["woman's bag"]
    What color is the sphere?                       -> ["sphere"]
    What shape is the red object?                   -> ["red object"]
    Is the cup on the left or right side of the dog? -> ["cup", "dog"]

A question without "the ..." gives no target (no search). :class:`GivenTargets` returns the targets a caller knows
(an annotation, V*'s refusal list)."""

from __future__ import annotations

import re
from collections.abc import Sequence

ATTRIBUTE_WORDS = frozenset(
    """color colour colors colours shape shapes material materials size sizes breed type kind brand number text
    word words letter letters name left right top bottom middle center centre side front back image picture photo
    photograph scene view option options answer question following""".split()
)
BOUNDARY_WORDS = frozenset(
    """of on in at to from with by for near next behind above below under over beside between and or is are was were
    does do did has have can could would should which that who whose where when how than as""".split()
)


def _question(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if "?" in line:
            return line[: line.index("?") + 1]
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def rule_targets(text: str, limit: int = 3) -> list[str]:
    q = _question(text)
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9'\-]*|[?,.;:!]", q)
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i].lower() != "the":
            i += 1
            continue
        j = i + 1
        phrase: list[str] = []
        while j < len(words) and words[j].lower() not in BOUNDARY_WORDS and words[j] not in "?,.;:!":
            phrase.append(words[j])
            j += 1
        i = j
        if not phrase or all(w.lower() in ATTRIBUTE_WORDS for w in phrase):
            continue
        if phrase[-1].lower() in ATTRIBUTE_WORDS and len(phrase) > 1:  # "the dog's color" -> dog's
            phrase = [w for w in phrase if w.lower() not in ATTRIBUTE_WORDS]
        name = " ".join(phrase)
        if name.lower() not in (o.lower() for o in out):
            out.append(name)
    return out[:limit]


class RuleTargets:
    def __init__(self, limit: int = 3):
        self.limit = limit

    def __call__(self, question: str) -> list[str]:
        return rule_targets(question, self.limit)


class GivenTargets:
    def __init__(self, targets: Sequence[str]):
        self.targets = list(targets)

    def __call__(self, question: str) -> list[str]:
        return list(self.targets)
