"""A multi-turn conversation for any model with the generation contract (``stream_text``, ``cambrian.models.generate``).

Turns are ``{"role", "content"}`` messages rendered by the model's chat template; an image belongs to the user turn
it was given with (``<image>`` tags at the start of that turn), and the images are kept in tag order. As in the
official CLI, an image given before the first question goes with the first turn and is not re-sent afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..constants import IMAGE_TOKEN
from ..errors import InputError


class Conversation:
    def __init__(self, system: str | None = None):
        self.system = system
        self.messages: list[dict] = []
        self.images: list = []  # every image of the conversation, in the order of their tags
        self.pending: list = []  # images waiting for the next user turn

    def attach(self, image) -> None:
        """An image (PIL image or path) for the next user turn."""
        self.pending.append(image)

    def reset(self) -> None:
        """Forget the turns, their images and any pending image (the system prompt stays)."""
        self.messages, self.images, self.pending = [], [], []

    def add_user(self, text: str, images: Sequence = ()) -> None:
        """A user turn with the pending images and ``images``; tags go first unless ``text`` places them."""
        if self.messages and self.messages[-1]["role"] == "user":
            raise InputError("conversation: two user turns in a row (add the assistant's reply first)")
        ims = [*self.pending, *images]
        n = text.count(IMAGE_TOKEN)
        if n == 0:
            text = f"{IMAGE_TOKEN}\n" * len(ims) + text
        elif n != len(ims):
            raise InputError(f"the text has {n} {IMAGE_TOKEN} tags but {len(ims)} images go with this turn")
        self.messages.append({"role": "user", "content": text})
        self.images += ims
        self.pending = []

    def add_assistant(self, text: str) -> None:
        if not self.messages or self.messages[-1]["role"] != "user":
            raise InputError("conversation: an assistant turn must follow a user turn")
        self.messages.append({"role": "assistant", "content": text})

    def prompt(self) -> tuple[list[dict], list]:
        """(messages with the system prompt first when set, images in tag order)."""
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return head + [dict(m) for m in self.messages], list(self.images)

    def _undo_user(self, n_images: int) -> None:
        self.messages.pop()
        if n_images:
            del self.images[-n_images:]

    def stream_reply(
        self, model, text: str, images: Sequence = (), sampling=None, max_new_tokens: int | None = None
    ) -> Iterator[str]:
        """Ask ``text`` and yield the answer's text deltas. The reply joins the history once complete; when the
        generation fails or the caller stops early the question is dropped again (the history is unchanged)."""
        before = len(self.images)
        pending = list(self.pending)
        self.add_user(text, images)
        messages, ims = self.prompt()
        pieces: list[str] = []
        ok = False
        try:
            for d in model.stream_text(messages, ims, max_new_tokens=max_new_tokens, sampling=sampling):
                pieces.append(d)
                yield d
            ok = True
        finally:
            if ok:
                self.add_assistant("".join(pieces))
            else:
                self._undo_user(len(self.images) - before)
                self.pending = pending
