"""``"search"`` on ``POST /v1/chat/completions``: guided visual search (``cambrian.search``) before the answer.

``"search": true`` (or an object of search settings, e.g. ``{"crop_scale": 3}``) on a request with exactly one
image: the objects the last user turn names are searched for in that image, and crops of what was found join the
last user turn as extra images with their boxes (the memory prompt of ``cambrian.search.memory``); the answer is
then generated as for any request (sampling, streaming, batching unchanged). The response carries ``"search"``:
the targets, each search's visited patches and found box (image pixels), and the memory crops' boxes.

Only localisers that do not run the LLM are served (``embedding``, the default): the search runs beside the
generation worker, which owns the LLM.
"""

from __future__ import annotations

from ..constants import IMAGE_TOKEN
from ..errors import UserError
from .errors import bad_request

SERVED_LOCALISERS = ("embedding",)


def search_conversation(model, messages: list[dict], images: list, options) -> tuple[list[dict], list, dict]:
    """(messages, images) with the memory of a search added to the last user turn, and the search's trace."""
    from ..search.guided import GuidedSearch, Question
    from ..search.memory import focus_text
    from ..search.settings import search_settings

    if len(images) != 1:
        raise bad_request(f"search needs exactly one image in the request, got {len(images)}", param="search")
    try:
        settings = search_settings([], {"trigger": "always", **(options if isinstance(options, dict) else {})})
    except UserError as e:
        raise bad_request(f"search: {e}", param="search") from None
    if settings.localiser not in SERVED_LOCALISERS:
        raise bad_request(
            f"search: localiser {settings.localiser!r} is not served (served: {', '.join(SERVED_LOCALISERS)})",
            param="search",
        )
    try:
        guided = GuidedSearch(model, settings)
    except ValueError as e:  # e.g. a model without a grounded grid
        raise bad_request(f"search: {e}", param="search") from None
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    question = messages[last]["content"].replace(IMAGE_TOKEN, "").strip()
    names = guided.extractor(question)[: settings.max_targets]
    ((results, memory),) = guided.look([Question(question, images[0])], [names])
    trace = {
        "targets": names,
        "searches": [r.to_dict() for r in results],
        "memory": [m.to_dict() for m in memory],
    }
    if not memory:
        return messages, images, trace
    out = [dict(m) for m in messages]
    body = out[last]["content"]
    tags = IMAGE_TOKEN if IMAGE_TOKEN in body else ""  # the image's own turn keeps its tag first
    out[last]["content"] = (tags + "\n" if tags else "") + focus_text(memory, images[0].size) + "\n" + question
    return out, [images[0], *[m.crop for m in memory]], trace
