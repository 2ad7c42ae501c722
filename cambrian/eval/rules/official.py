"""The official rules: what the Cambrian-1 evaluation scripts compute (the numbers of the paper's table); every
benchmark scores with them by default.

- ``official_mcq``: the scripts' ``extract_mcq_answer`` (keyword split, ``rstrip(chars)``, ``lstrip("(")``,
  ``rstrip(")")``, first character);
- ``official_keyword``: their ``extract_answer`` / ``extract_single_answer`` without the first-word step;
- ``close_number`` / ``official_relaxed``: "both sides parse with Python's ``float``" and 5 % of the ground truth;
  nothing else is stripped (no ``%``, ``$``, ``,`` or trailing period);
- ``official_anls``: the DocVQA / InfographicVQA evaluator (distance on whitespace-normalised lower-cased text,
  divided by the longer **raw** string; a question scores ``1 - NL`` unless that is below 0.5);
- ``evalai_normalize`` / ``official_vqa_accuracy``: the TextVQA (m4c) evaluator's answer processor and soft score.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .common import (
    PERIOD,
    after_keywords,
    first_char,
    is_float,
    normalized_distances,
    punctuation_out,
    relative_close,
    soft_accuracy,
    words_out,
)


def official_mcq(text: str | None, strip_chars: str = ".", truncate: bool = True) -> str:
    """The official ``extract_mcq_answer``: after the keywords, ``strip()``, ``rstrip(strip_chars)``, ``lstrip("(")``,
    ``rstrip(")")`` (no strip after those) and, when ``truncate``, the first character of what is left."""
    return first_char(after_keywords(text).strip().rstrip(strip_chars).lstrip("(").rstrip(")"), truncate)


def official_keyword(text: str | None) -> str:
    """The official ``extract_answer`` (ScienceQA, MMMU open questions): after the keywords, ``strip()`` then
    ``rstrip(".")``."""
    return after_keywords(text).strip().rstrip(".")


def close_number(extracted, gt, rel: float = 0.05) -> bool:
    """Both parse as numbers (:func:`is_float`) and ``extracted`` is within ``rel`` of the ground truth. The official
    MMMU / MathVista code takes the tolerance of the prediction (docs/official-code.md#bugs B8); this takes it of the
    ground truth."""
    return is_float(gt) and is_float(extracted) and relative_close(float(extracted), float(gt), rel)


def official_relaxed(pred: str, gt: str, tol: float = 0.05) -> bool:
    """ChartQA's official relaxed accuracy on already lower-cased strings: when both parse as floats,
    ``|pred - gt| <= tol * |gt|``; otherwise exact string equality. "45%", "1,234" and "brazil." are not stripped."""
    if is_float(gt) and is_float(pred):
        return relative_close(float(pred), float(gt), tol)
    return pred == gt


def official_anls(pred: str, gts: Iterable[str], threshold: float = 0.5) -> float:
    """ANLS of one question as the DocVQA / InfographicVQA evaluator computes it: for each ground truth,
    NL = edit distance of the whitespace-collapsed, lower-cased strings / ``max(len(gt.upper()), len(pred.upper()))``
    of the **raw** strings (0 when both are empty); the question scores ``1 - min(NL)``, zeroed only when that is
    **below** ``threshold`` (a distance of exactly 0.5 keeps 0.5)."""
    values = normalized_distances(pred, gts, raw_lengths=True)
    if not values:
        return 0.0
    score = 1.0 - min(values)
    return 0.0 if score < threshold else score


# --- the EvalAI / m4c answer processor (TextVQA) ---------------------------------------------------------------
# The full contraction table of the TextVQA evaluator's answer processor, "key=value" pairs. Its quirks are kept
# on purpose (they decide matches): keys with capitals ("Im") never fire after lower-casing, "somebody'd" maps to
# "somebodyd", and the number-word and article steps run first.
OFFICIAL_CONTRACTIONS = dict(
    kv.split("=", 1)
    for kv in """
'ow'sat='ow's'at 'ows'at='ow's'at I'dve=I'd've Id've=I'd've Im=I'm Ive=I've aint=ain't arent=aren't cant=can't
couldn'tve=couldn't've couldnt=couldn't couldnt've=couldn't've couldve=could've didnt=didn't doesnt=doesn't
dont=don't hadn'tve=hadn't've hadnt=hadn't hadnt've=hadn't've hasnt=hasn't havent=haven't he'dve=he'd've hed=he'd
hed've=he'd've hes=he's howd=how'd howll=how'll hows=how's isnt=isn't it'dve=it'd've itd=it'd itd've=it'd've
itll=it'll let's=let's maam=ma'am mightn'tve=mightn't've mightnt=mightn't mightnt've=mightn't've mightve=might've
mustnt=mustn't mustve=must've neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at
shant=shan't she'dve=she'd've she's=she's shed've=she'd've shouldn'tve=shouldn't've shouldnt=shouldn't
shouldnt've=shouldn't've shouldve=should've somebody'd=somebodyd somebody'dve=somebody'd've
somebodyd've=somebody'd've somebodyll=somebody'll somebodys=somebody's someone'dve=someone'd've
someoned=someone'd someoned've=someone'd've someonell=someone'll someones=someone's
something'dve=something'd've somethingd=something'd somethingd've=something'd've somethingll=something'll
thats=that's there'dve=there'd've thered=there'd thered've=there'd've therere=there're theres=there's
they'dve=they'd've theyd=they'd theyd've=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't we'dve=we'd've wed've=we'd've werent=weren't weve=we've whatll=what'll whatre=what're whats=what's
whatve=what've whens=when's whered=where'd wheres=where's whereve=where've who'dve=who'd've whod=who'd
whod've=who'd've wholl=who'll whos=who's whove=who've whyll=why'll whyre=why're whys=why's wont=won't
wouldn'tve=wouldn't've wouldnt=wouldn't wouldnt've=wouldn't've wouldve=would've y'all'dve=y'all'd've
y'alld've=y'all'd've y'allll=y'all'll yall=y'all yall'd've=y'all'd've yall'll=y'all'll you'dve=you'd've
youd=you'd youd've=you'd've youll=you'll youre=you're youve=you've
""".split()
)
_DIGIT_COMMA = re.compile(r"(?<=\d),+(?=\d)")
# the evaluator passes re.UNICODE (= 32) as the *count* argument of sub(): at most 32 periods are removed (its
# lookbehind is also mistyped as "(?!<=\d)", a no-op lookahead, which leaves PERIOD's rule)
_PERIOD_COUNT = int(re.UNICODE)


def evalai_normalize(answer: str) -> str:
    """The TextVQA (m4c) evaluator's answer processor, step by step:

    1. lower-case; delete "," and "?"; "'s" -> " 's"; strip;
    2. newlines / tabs -> spaces; strip;
    3. for each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``: delete it when it touches a space (or a
       digit-comma-digit run exists), else replace it by a space; then delete periods not followed by a digit
       (the first 32 only);
    4. lower-case words; number words "none".."ten" -> digits; drop "a", "an", "the"; apply the contraction table.
    """
    s = str(answer).lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    s = s.replace("\n", " ").replace("\t", " ").strip()
    out = PERIOD.sub("", punctuation_out(s, _DIGIT_COMMA.search(s) is not None), count=_PERIOD_COUNT)
    return words_out(out, OFFICIAL_CONTRACTIONS)


def official_vqa_accuracy(pred: str, gts: Sequence[str]) -> float:
    """TextVQA soft accuracy as the official evaluator computes it: prediction and answers lower-cased and passed
    through :func:`evalai_normalize`; the score of the prediction is the mean over the leave-one-out subsets of
    the answers of ``min(1, matches / 3)`` (0 when it matches no answer)."""
    return soft_accuracy(evalai_normalize(str(pred).lower()), [evalai_normalize(str(a).lower()) for a in gts])
