"""A request's prompt, from messages to token ids, off the generation thread (an 18 MB prompt tokenised there stalled
every other request for 25 s).

1. A bound before any tokenisation: no token of the vocabulary is longer than ``L`` characters, so a text of ``n``
   characters is at least ``n / L`` tokens; messages whose text alone is ``context * L`` characters or more cannot fit
   the model's context and get their 400 (``context_length_exceeded``) at once. (In the tokenizer's own alphabet, a
   character of the request is one or more vocabulary characters, so the bound holds for byte-level BPE as well.)
2. Tokenisation through the model's ``prompt_ids`` on one worker thread of its own, never on the generation thread:
   encodes never overlap (a Hugging Face fast tokenizer switches its special-token handling per encode call), and
   the generation thread only decodes, which switches nothing.

The generation thread then receives ``PromptIds`` and never tokenises a request.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..errors import UserError
from ..models.generate import PromptIds
from .errors import bad_request


def longest_token_chars(tokenizer) -> int | None:
    """Characters of the longest (non-special) vocabulary entry; None when the tokenizer cannot list its vocabulary
    (then only the context check after tokenising applies)."""
    if not hasattr(tokenizer, "get_vocab"):
        return None
    special = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    return max((len(t) for t in tokenizer.get_vocab() if t not in special), default=1) or 1


class PromptTokenizer:
    """Through the generation contract only (``prompt_ids``, ``context_length``, ``tokenizer``). Every request's prompt
    is encoded on this one worker thread, so encodes never overlap (a Hugging Face fast tokenizer switches its
    special-token handling per encode call); the generation thread only decodes with it, which switches nothing."""

    def __init__(self, model):
        self._model = model
        self.context = int(model.context_length or 0)
        longest = longest_token_chars(model.tokenizer)
        self.max_chars = self.context * longest if self.context and longest else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cambrian-tokenize")

    def check_length(self, messages: list[dict]) -> None:
        """Step 1: a 400 for text that cannot fit the context, without tokenising it."""
        if self.max_chars is None:
            return
        chars = sum(len(m["content"]) for m in messages)
        if chars >= self.max_chars:
            raise bad_request(
                f"the messages hold {chars} characters, at least {chars // (self.max_chars // self.context)} tokens; "
                f"the model's context is {self.context}",
                param="messages",
                code="context_length_exceeded",
            )

    def __call__(self, messages: list[dict]) -> PromptIds:
        """Steps 1 and 2 (blocks the calling thread, not the event loop: call it from a worker thread)."""
        self.check_length(messages)
        return self._pool.submit(self._tokenize, messages).result()

    def _tokenize(self, messages: list[dict]) -> PromptIds:
        try:
            return PromptIds(self._model.prompt_ids(messages))
        except UserError as e:  # a conversation the template refuses
            raise bad_request(f"messages: {e}", param="messages") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
