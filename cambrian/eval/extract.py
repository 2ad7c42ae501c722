"""Shared answer-extraction helpers and per-item metrics (our own implementations of the published rules).

Two families. The **official** rules reproduce what the Cambrian-1 evaluation scripts compute (the numbers of the
paper's table); every benchmark scores with them by default:

- ``official_mcq``: the scripts' ``extract_mcq_answer`` (keyword split, ``rstrip(chars)``, ``lstrip("(")``,
  ``rstrip(")")``, first character);
- ``official_keyword``: their ``extract_answer`` / ``extract_single_answer`` without the first-word step;
- ``is_float`` / ``official_relaxed``: "both sides parse with Python's ``float``" and 5 % of the ground truth;
  nothing else is stripped (no ``%``, ``$``, ``,`` or trailing period);
- ``official_anls``: the DocVQA / InfographicVQA evaluator (distance on whitespace-normalised lower-cased text,
  divided by the longer **raw** string; a question scores ``1 - NL`` unless that is below 0.5);
- ``evalai_normalize`` / ``official_vqa_accuracy``: the TextVQA (m4c) evaluator's answer processor and soft score.

The **lenient** helpers (``mcq_extract``, ``keyword_extract``, ``to_number`` / ``within`` / ``relaxed_match``,
``anls``, ``normalize_vqa`` / ``vqa_accuracy``, ``yes_no``) forgive formatting the official ones count wrong
("45%", "1,234", "(B)", "Brazil."). They are used only with ``--scorer lenient``, whose metrics carry a
``_lenient`` suffix and never enter the paper-style table.

- ``first_token``: "first whitespace token, lower, rstrip '.:,'" (POPE / MMStar, official); empty text gives ""
  instead of the official ``split()[0]`` IndexError (docs/official-code.md#bugs B8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

ANSWER_KEYS = ("answer is", "answer is:", "answer:")


# --- official rules ------------------------------------------------------------------------------------------
def _after_keywords(text: str | None) -> str:
    """Lower-case and strip; for each answer keyword present (in this order), keep what follows its last use."""
    s = (text or "").lower().strip()
    for key in ANSWER_KEYS:
        if key in s:
            s = s.split(key)[-1]
    return s


def official_mcq(text: str | None, strip_chars: str = ".", truncate: bool = True) -> str:
    """The official ``extract_mcq_answer``: after the keywords, ``strip()``, ``rstrip(strip_chars)``, ``lstrip("(")``,
    ``rstrip(")")`` (no strip after those) and, when ``truncate``, the first character of what is left."""
    s = _after_keywords(text).strip().rstrip(strip_chars).lstrip("(").rstrip(")")
    if truncate and len(s) > 1:
        s = s[0]
    return s


def official_keyword(text: str | None) -> str:
    """The official ``extract_answer`` (ScienceQA, MMMU open questions): after the keywords, ``strip()`` then
    ``rstrip(".")``."""
    return _after_keywords(text).strip().rstrip(".")


def close_number(extracted, gt, rel: float = 0.05) -> bool:
    """Both parse as numbers (:func:`is_float`) and ``extracted`` is within ``rel`` of the ground truth. The official
    MMMU / MathVista code takes the tolerance of the prediction (docs/official-code.md#bugs B8); this takes it of the
    ground truth."""
    return is_float(gt) and is_float(extracted) and abs(float(extracted) - float(gt)) <= abs(float(gt)) * rel


def is_float(text) -> bool:
    """What the official ``is_number`` accepts: anything Python's ``float()`` parses ("12", " 1e3 ", "1_000", "nan");
    not "45%", "1,234" or "$5"."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def official_relaxed(pred: str, gt: str, tol: float = 0.05) -> bool:
    """ChartQA's official relaxed accuracy on already lower-cased strings: when both parse as floats,
    ``|pred - gt| <= tol * |gt|``; otherwise exact string equality. "45%", "1,234" and "brazil." are not stripped."""
    if is_float(gt) and is_float(pred):
        return abs(float(pred) - float(gt)) <= abs(float(gt)) * tol
    return pred == gt


def official_anls(pred: str, gts: Iterable[str], threshold: float = 0.5) -> float:
    """ANLS of one question as the DocVQA / InfographicVQA evaluator computes it: for each ground truth,
    NL = edit distance of the whitespace-collapsed, lower-cased strings / ``max(len(gt.upper()), len(pred.upper()))``
    of the **raw** strings (0 when both are empty); the question scores ``1 - min(NL)``, zeroed only when that is
    **below** ``threshold`` (a distance of exactly 0.5 keeps 0.5)."""
    pred = pred or ""
    det = " ".join(pred.strip().lower().split())
    values = []
    for gt in gts:
        gt = str(gt)
        ref = " ".join(gt.strip().lower().split())
        length = max(len(gt.upper()), len(pred.upper()))
        values.append(0.0 if length == 0 else levenshtein(ref, det) / length)
    if not values:
        return 0.0
    score = 1.0 - min(values)
    return 0.0 if score < threshold else score


def mcq_extract(text: str | None, *, truncate: bool = True, strip_chars: str = ".") -> str:
    """Lower/strip; keep the text after the last "answer is" / "answer is:" / "answer:"; strip ``strip_chars``
    from the end, a leading "(" and a trailing ")"; keep the first character when ``truncate`` and longer."""
    s = (text or "").lower().strip()
    for key in ANSWER_KEYS:
        if key in s:
            s = s.split(key)[-1]
    s = s.strip().rstrip(strip_chars).strip()
    if s.startswith("("):
        s = s[1:]
    if s.endswith(")"):
        s = s[:-1]
    s = s.strip()
    if truncate and len(s) > 1:
        s = s[0]
    return s


def keyword_extract(text: str | None) -> str:
    """``mcq_extract`` without truncation and without the bracket stripping: the final-answer phrase."""
    s = (text or "").lower().strip()
    for key in ANSWER_KEYS:
        if key in s:
            s = s.split(key)[-1]
    return s.strip().rstrip(".").strip()


def first_token(text: str | None, strip_chars: str = ".:,") -> str:
    parts = (text or "").split()
    return parts[0].lower().rstrip(strip_chars) if parts else ""


def yes_no(text: str | None) -> str:
    """MME toolkit rule: exact yes/no, else "yes"/"no" found in the first four characters, else "other"."""
    s = (text or "").lower().strip().rstrip(".")
    if s in ("yes", "no"):
        return s
    head = s[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


# --- numbers -------------------------------------------------------------------------------------------------
def to_number(text) -> float | None:
    """Parse "1,234", "$5", "45%", " 3.0 " as a float (no /100 for "%"); None when not a number."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip().rstrip(".").strip()
    s = s.replace(",", "")
    if s.startswith("$"):
        s = s[1:]
    if s.endswith("%"):
        s = s[:-1]
    try:
        return float(s.strip())
    except ValueError:
        return None


def within(pred, gt, tol: float = 0.05) -> bool:
    """|pred - gt| <= tol * |gt| (relative to the ground truth; exact when gt == 0)."""
    p, g = to_number(pred), to_number(gt)
    if p is None or g is None:
        return False
    if g == 0:
        return p == 0
    return abs(p - g) <= tol * abs(g)


def relaxed_match(pred: str, gt: str, tol: float = 0.05) -> bool:
    """ChartQA relaxed accuracy: numeric within ``tol`` of the ground truth, else case-insensitive exact match.

    The official local scorer only lower-cases, so "45%" never matches "45" (docs/official-code.md#bugs B8); we strip
    "%", "$" and thousands separators before the numeric comparison (the ChartQA paper's intent)."""
    p, g = str(pred).strip().lower(), str(gt).strip().lower()
    if to_number(p) is not None and to_number(g) is not None:
        return within(p, g, tol)
    return p.rstrip(".") == g


# --- Levenshtein / ANLS --------------------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(pred: str, gts: Iterable[str], threshold: float = 0.5) -> float:
    """max over ground truths of 1 - NL when NL < threshold else 0, with NL = edit distance / max length
    (lower-cased, whitespace-stripped, as the DocVQA evaluator)."""
    p = " ".join((pred or "").strip().lower().split())
    best = 0.0
    for gt in gts:
        g = " ".join(str(gt).strip().lower().split())
        denom = max(len(p), len(g))
        nl = levenshtein(p, g) / denom if denom else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best


# --- EvalAI VQA normalisation --------------------------------------------------------------------------------
_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itll": "it'll",
    "lets": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "shant": "shan't",
    "shed": "she'd",
    "shes": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "somebodys": "somebody's",
    "someones": "someone's",
    "thats": "that's",
    "thered": "there'd",
    "theres": "there's",
    "theyd": "they'd",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "yall": "y'all",
    "youd": "you'd",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(\.)(?!\d)")  # a period not followed by a digit (EvalAI's effective rule)
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _process_punctuation(s: str) -> str:
    out = s
    for p in _PUNCT:
        if (p + " " in s or " " + p in s) or re.search(_COMMA_STRIP, s) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out)


def _process_digit_article(s: str) -> str:
    words = []
    for w in s.lower().split():
        w = _NUMBER_WORDS.get(w, w)
        if w not in _ARTICLES:
            words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def normalize_vqa(answer: str) -> str:
    """EvalAI answer normalisation (whitespace, punctuation, number words, articles, contractions)."""
    s = str(answer).replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(s))


def vqa_accuracy(pred: str, gts: Sequence[str]) -> float:
    """VQA soft accuracy of a prediction against (usually ten) human answers: the mean over the leave-one-out
    subsets of ``min(1, #matches / 3)``, after EvalAI normalisation of both sides."""
    if not gts:
        return 0.0
    p = normalize_vqa(pred)
    g = [normalize_vqa(a) for a in gts]
    accs = []
    for i in range(len(g)):
        others = g[:i] + g[i + 1 :]
        accs.append(min(1.0, sum(o == p for o in others) / 3.0))
    return sum(accs) / len(accs)


# --- official EvalAI / m4c answer processor (TextVQA) ----------------------------------------------------------
# The full contraction table of the TextVQA evaluator's answer processor, "key=value" pairs. Its quirks are kept
# on purpose (they decide matches): keys with capitals ("Im") never fire after lower-casing, "somebody'd" maps to
# "somebodyd", and the number-word and article steps run first.
_OFFICIAL_CONTRACTIONS = dict(
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
# a period not followed by a digit (the evaluator's lookbehind is mistyped as "(?!<=\d)", a no-op lookahead)
_OFFICIAL_PERIOD = re.compile(r"\.(?!\d)")
_OFFICIAL_DIGIT_COMMA = re.compile(r"(?<=\d),+(?=\d)")
# the evaluator passes re.UNICODE (= 32) as the *count* argument of sub(): at most 32 periods are removed
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)


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
    out = s
    digit_comma = _OFFICIAL_DIGIT_COMMA.search(s) is not None
    for p in _PUNCT:
        if (p + " " in s or " " + p in s) or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _OFFICIAL_PERIOD.sub("", out, count=_OFFICIAL_PERIOD_COUNT)
    words = []
    for w in out.lower().split():
        w = _NUMBER_WORDS.get(w, w)
        if w not in _ARTICLES:
            words.append(w)
    return " ".join(_OFFICIAL_CONTRACTIONS.get(w, w) for w in words)


def official_vqa_accuracy(pred: str, gts: Sequence[str]) -> float:
    """TextVQA soft accuracy as the official evaluator computes it: prediction and answers lower-cased and passed
    through :func:`evalai_normalize`; the score of the prediction is the mean over the leave-one-out subsets of
    the answers of ``min(1, matches / 3)`` (0 when it matches no answer)."""
    if not gts:
        return 0.0
    p = evalai_normalize(str(pred).lower())
    g = [evalai_normalize(str(a).lower()) for a in gts]
    accs = [min(1.0, sum(o == p for o in g[:i] + g[i + 1 :]) / 3.0) for i in range(len(g))]
    return sum(accs) / len(accs)
