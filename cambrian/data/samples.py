"""What makes a LLaVA record a usable training sample, without torch: the bad-sample reasons and the structural check
of a conversation. Training (``dataset``), ``cambrian data validate`` and ``cambrian data curate`` apply the same
rules, so curation never keeps a record that training would drop."""

from __future__ import annotations

from ..constants import IMAGE_TOKEN

BAD_REASONS = (
    "missing_image",
    "corrupt_image",
    "wrong_roles",
    "empty_turn",
    "image_count_mismatch",
    "over_length",
    "no_labels",
    "bad_record",
    "image_outside_root",
    "bad_json",
    "record_too_large",  # a line / array element over MAX_RECORD_BYTES (cambrian.data.llava), never read
)

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class BadSample(Exception):
    def __init__(self, reason: str, detail: str = ""):
        assert reason in BAD_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---- structural checks ------------------------------------------------------------------------------------
def normalize_conversation(record: dict, n_images: int) -> list[dict]:
    """LLaVA ``conversations`` -> ``[{"role": "system"|"user"|"assistant", "content": str}]``.

    Checks: roles alternate user/assistant starting with user and ending with assistant (an optional leading
    system turn is allowed), no empty turn, number of ``<image>`` tags == number of images. A message with a single
    ``<image>`` gets it moved to the front as ``"<image>\\n" + text.strip()`` (official ``preprocess_multimodal``);
    with one image and no tag anywhere we raise (the official data always carries the tag).
    """
    conv = record.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise BadSample("bad_record", "no conversations")
    msgs = []
    for t, turn in enumerate(conv):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise BadSample("bad_record", f"turn {t} lacks from/value")
        role = ROLE_MAP.get(str(turn["from"]).lower())
        if role is None:
            raise BadSample("wrong_roles", f"turn {t}: unknown role {turn['from']!r}")
        text = turn["value"]
        if not isinstance(text, str) or not text.replace(IMAGE_TOKEN, "").strip():
            raise BadSample("empty_turn", f"turn {t}")
        msgs.append({"role": role, "content": text})
    body = msgs[1:] if msgs[0]["role"] == "system" else msgs
    if not body or len(body) % 2:
        raise BadSample("wrong_roles", "turns must be user/assistant pairs")
    for t, m in enumerate(body):
        if m["role"] != ("user" if t % 2 == 0 else "assistant"):
            raise BadSample("wrong_roles", f"turn {t} is {m['role']}")
    tags = sum(m["content"].count(IMAGE_TOKEN) for m in msgs)
    if tags != n_images:
        raise BadSample("image_count_mismatch", f"{tags} <image> tags for {n_images} images")
    if any(IMAGE_TOKEN in m["content"] for m in msgs if m["role"] != "user"):
        raise BadSample("image_count_mismatch", "<image> outside a user turn")
    for m in msgs:
        if m["content"].count(IMAGE_TOKEN) == 1:
            m["content"] = IMAGE_TOKEN + "\n" + m["content"].replace(IMAGE_TOKEN, "").strip()
    return msgs
