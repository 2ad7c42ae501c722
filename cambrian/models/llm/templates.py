"""Chat templates (docs/official-code.md#templates) rendered as *segments*: ``(text, trainable)`` pieces.

Training and inference share one rendering: ``render_segments`` splits a conversation into text pieces, and
``cambrian.models.llm.tokenize`` tokenises each piece on its own and concatenates the ids. Labels therefore
line up with the ids by construction (no "tokenization mismatch" check as in the official ``preprocess_*``),
and the inference prompt is tokenised exactly like the prompt part of a training sample.

Trainable pieces are the assistant replies together with their end-of-turn token (``<|eot_id|>`` for
llama_3, ``</s>`` for vicuna_v1, ``<|im_end|>`` for chatml, ``<|end|>`` for phi3), which is what the official
label masks train. Everything else (system, user turns, role headers, separators) is masked.

Template ids: ``llama_3`` (8B), ``vicuna_v1`` (13B), ``chatml`` (34B, official ``chatml_direct``), ``phi3`` (3B),
``plain`` (stage-1 caption pre-training) and ``smollm2`` (SmolLM2's own ChatML format, for the nano model).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...constants import IMAGE_TOKEN
from ...errors import InputError
from ...registry import Registry

Segment = tuple[str, bool]
Part = tuple[str, bool, bool]  # (text, trainable, is_data)

# ---- official system strings (docs/official-code.md#templates, byte-for-byte) ------------------------------------------------

# conv_llama_3.system: note the space before each "\n", the 4-space indents and the trailing space.
LLAMA_3_SYSTEM = (
    "You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. \n"
    "    As a multimodal AI, you have the ability to process and analyze images. Whenever an image is present "
    "in the conversation, very carefully examine it and consider its content when formulating your response.\n"
    "    You should give concise responses to very simple questions, but provide thorough responses to more "
    "complex and open-ended questions. "
)
VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# conv_chatml_direct (second definition, the one in conv_templates). The official ``system`` field carries the
# "<|im_start|>system\n" header; here the header lives in the template and this is the content only.
CHATML_SYSTEM = (
    "You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. As a multimodal AI, you have "
    "the ability to process and analyze images. Whenever an image is present in the conversation, very carefully "
    "examine it and consider its content when formulating your response. You should give concise responses to "
    "very simple questions, but provide thorough responses to more complex and open-ended questions."
)
PHI3_SYSTEM = "You are a helpful AI assistant."  # official field: "<|system|>\nYou are a helpful AI assistant."
# SmolLM2-Instruct's default system prompt, from the chat template stored in the packaged GGUF
# (``tokenizer.chat_template``); tests/test_templates_assets.py checks it against the file.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

_ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
}


# ---- messages ---------------------------------------------------------------------------------------------


def normalize_image_text(text: str) -> str:
    """Place image tags like the official ``preprocess_multimodal``.

    A message with exactly one ``<image>`` becomes ``"<image>\\n" + rest.strip()`` (the tag moves to the start,
    as the official code does for training data and as ``"<image>\\n" + question`` at inference). Messages with
    several ``<image>`` tags keep them where they are (interleaved multi-image prompts; the official code would
    collapse them into one tag). Messages without a tag are returned unchanged.
    """
    n = text.count(IMAGE_TOKEN)
    if n == 0:
        return text
    if n == 1:
        return IMAGE_TOKEN + "\n" + text.replace(IMAGE_TOKEN, "").strip()
    return text.strip()


def normalize_messages(messages: Iterable[dict[str, Any]]) -> tuple[str | None, list[tuple[str, str]]]:
    """``[{"role": ..., "content": ...}]`` or LLaVA ``[{"from": "human"|"gpt", "value": ...}]`` ->
    ``(system or None, [(role, content), ...])`` with roles alternating user / assistant.

    A leading assistant turn is skipped, as the official ``preprocess`` does for conversations that start with
    ``gpt``. ``<image>`` tags are normalised with :func:`normalize_image_text`.
    """
    system: str | None = None
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InputError(f"message {i}: expected a dict, got {type(m).__name__}")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if role is None or content is None:
            raise InputError(f"message {i}: needs 'role'/'content' (or LLaVA 'from'/'value'), got keys {sorted(m)}")
        if not isinstance(content, str):
            raise InputError(f"message {i}: content must be a string, got {type(content).__name__}")
        canon = _ROLE_ALIASES.get(str(role).lower())
        if canon is None:
            raise InputError(f"message {i}: unknown role {role!r} (valid: {sorted(_ROLE_ALIASES)})")
        if canon == "system":
            if turns or system is not None:
                raise InputError(f"message {i}: a system message is only allowed first")
            system = content
            continue
        if not turns and canon == "assistant":
            continue  # official behaviour: drop a leading gpt turn
        expected = "user" if not turns or turns[-1][0] == "assistant" else "assistant"
        if canon != expected:
            raise InputError(f"message {i}: expected a {expected} turn, got {canon} (turns must alternate)")
        turns.append((canon, normalize_image_text(content)))
    return system, turns


# ---- templates --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatTemplate:
    """One conversation format. Rendering of a conversation (user u_i, assistant a_i)::

        system_fmt{system} + [user_fmt{u_i} + assistant_prefix + (reply_prefix + a_i + end_of_turn) + after_turn]*
        (+ generation_prompt)

    where the parenthesised part of each assistant turn is trainable and everything else is not.
    """

    name: str
    system: str  # default system prompt (content only)
    system_fmt: str  # "{system}" is replaced by the system prompt
    user_fmt: str  # "{content}" is replaced by the user text
    assistant_prefix: str  # role header before a reply (masked)
    end_of_turn: str  # closes a reply (trained with the reply)
    generation_prompt: str  # what an inference prompt ends with
    reply_prefix: str = ""  # trained text before the reply (vicuna: the space after "ASSISTANT:")
    after_turn: str = ""  # masked separator after a reply's end-of-turn (smollm2: "\n")
    stop_strings: tuple[str, ...] = ()
    # BOS handling for tokenisation: True / False, or None = prepend the tokenizer's BOS when the tokenizer
    # itself adds one (``tokenizer("x")`` starts with bos_token_id).
    add_bos: bool | None = None
    images_only_user: bool = False  # plain: the user turn is reduced to its image tags
    description: str = ""

    # -- rendering --
    def render_parts(
        self,
        messages: Sequence[dict[str, Any]],
        system: str | None = None,
        add_generation_prompt: bool = False,
    ) -> list[Part]:
        """Render ``messages`` as ``[(text, trainable, is_data), ...]``, empty pieces dropped, nothing merged.

        ``is_data`` marks text that came from the conversation (system prompt, user turns, replies): it is
        tokenised as plain text, so control strings inside it (``<|im_end|>`` in a user message) never become
        control tokens. Everything else is the template's own text."""
        msg_system, turns = normalize_messages(messages)
        if msg_system is not None:
            system = msg_system
        if system is None:
            system = self.system
        if add_generation_prompt and turns and turns[-1][0] == "assistant":
            raise InputError("add_generation_prompt=True needs the conversation to end with a user turn")
        pieces: list[Part] = []
        sys_head, _, sys_tail = self.system_fmt.partition("{system}")
        pieces += [
            (sys_head, False, False),
            (system if "{system}" in self.system_fmt else "", False, True),
            (sys_tail, False, False),
        ]
        user_head, _, user_tail = self.user_fmt.partition("{content}")
        for role, content in turns:
            if role == "user":
                if self.images_only_user:
                    content = IMAGE_TOKEN * content.count(IMAGE_TOKEN)
                pieces += [
                    (user_head, False, False),
                    (content if "{content}" in self.user_fmt else "", False, True),
                    (user_tail, False, False),
                ]
            else:
                pieces += [
                    (self.assistant_prefix, False, False),
                    (self.reply_prefix, True, False),
                    (content, True, True),
                    (self.end_of_turn, True, False),
                    (self.after_turn, False, False),
                ]
        if add_generation_prompt:
            pieces.append((self.generation_prompt, False, False))
        return [piece for piece in pieces if piece[0]]

    def render_segments(
        self,
        messages: Sequence[dict[str, Any]],
        system: str | None = None,
        add_generation_prompt: bool = False,
    ) -> list[Segment]:
        """Render ``messages`` as ``[(text, trainable), ...]``; adjacent pieces with the same flag are merged and
        empty pieces dropped. System prompt precedence: a system message in ``messages``, then ``system``, then
        the template default."""
        merged: list[Segment] = []
        for text, trainable, _ in self.render_parts(messages, system, add_generation_prompt):
            if merged and merged[-1][1] == trainable:
                merged[-1] = (merged[-1][0] + text, trainable)
            else:
                merged.append((text, trainable))
        return merged

    def control_strings(self) -> tuple[str, ...]:
        """The template's own text pieces (role headers, separators, end-of-turn, ...): the only places where
        control tokens may come from."""
        out = [
            self.system_fmt.replace("{system}", "\0"),
            self.user_fmt.replace("{content}", "\0"),
            self.assistant_prefix,
            self.reply_prefix,
            self.end_of_turn,
            self.after_turn,
            self.generation_prompt,
            *self.stop_strings,
        ]
        return tuple(dict.fromkeys(x for piece in out for x in piece.split("\0") if x))

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        system: str | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
        return "".join(t for t, _ in self.render_segments(messages, system, add_generation_prompt))

    def prompt(self, question: str, system: str | None = None) -> str:
        """Inference prompt for one user turn (which already carries its ``<image>`` tags)."""
        return self.render([{"role": "user", "content": question}], system, add_generation_prompt=True)

    # -- stopping --
    def stop_token_ids(self, tokenizer) -> list[int]:
        """Ids that end a reply: the template's end-of-turn token(s) first, then the tokenizer's EOS.

        For llama_3 this is ``<|eot_id|>`` (the model is trained to end turns with it), not only the config's
        ``eos_token_id`` ``<|end_of_text|>`` (docs/official-code.md#templates)."""
        ids: list[int] = []
        for s in self.stop_strings:
            tid = _single_token_id(tokenizer, s)
            if tid is not None and tid not in ids:
                ids.append(tid)
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None and eos not in ids:
            ids.append(eos)
        return ids

    def strip_reply(self, text: str) -> str:
        """Cut generated text at the first stop string (for decodes that kept special tokens)."""
        cut = len(text)
        for s in self.stop_strings:
            k = text.find(s)
            if k != -1:
                cut = min(cut, k)
        return text[:cut].strip()


def _single_token_id(tokenizer, s: str) -> int | None:
    vocab = tokenizer.get_vocab()
    if s in vocab:
        return vocab[s]
    ids = tokenizer(s, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


TEMPLATES: Registry[ChatTemplate] = Registry("chat template")


def _register(t: ChatTemplate, *aliases: str) -> ChatTemplate:
    TEMPLATES.register(t.name, t)
    for a in aliases:
        TEMPLATES.register(a, t)
    return t


_HDR = "<|start_header_id|>{}<|end_header_id|>"  # Cambrian's llama_3: no "\n\n" after <|end_header_id|>

LLAMA_3 = _register(
    ChatTemplate(
        name="llama_3",
        system=LLAMA_3_SYSTEM,
        system_fmt="<|begin_of_text|>" + _HDR.format("system") + "{system}<|eot_id|>",
        user_fmt=_HDR.format("user") + "{content}<|eot_id|>",
        assistant_prefix=_HDR.format("assistant"),
        end_of_turn="<|eot_id|>",
        generation_prompt=_HDR.format("assistant"),
        stop_strings=("<|eot_id|>",),
        add_bos=False,  # the literal <|begin_of_text|> of the template is the BOS
        description="Cambrian-8B (LLaMA-3-Instruct), Cambrian's variant without '\\n\\n' after the headers",
    ),
    # FIX (docs/official-code.md#bugs B1): the official train_fsdp.py handles ``--version llama_v3`` by setting the pad token
    # only, leaving default_conversation = vicuna_v1; the released 8B was evidently trained with conv_llama_3
    # (image_position 91 only matches it). Here ``llama_v3`` selects the llama_3 template.
    "llama_v3",
)

VICUNA_V1 = _register(
    ChatTemplate(
        name="vicuna_v1",
        system=VICUNA_V1_SYSTEM,
        system_fmt="{system} ",
        user_fmt="USER: {content} ",
        assistant_prefix="ASSISTANT:",
        reply_prefix=" ",
        end_of_turn="</s>",
        generation_prompt="ASSISTANT:",
        stop_strings=("</s>",),
        description="Cambrian-13B (Vicuna-1.5), SeparatorStyle.TWO with sep ' ' / sep2 '</s>'",
    ),
    "v1",
)

CHATML = _register(
    ChatTemplate(
        name="chatml",
        system=CHATML_SYSTEM,
        system_fmt="<|im_start|>system\n{system}<|im_end|>",
        user_fmt="<|im_start|>user\n{content}<|im_end|>",
        assistant_prefix="<|im_start|>assistant\n",
        end_of_turn="<|im_end|>",
        generation_prompt="<|im_start|>assistant\n",
        stop_strings=("<|im_end|>",),
        description="Cambrian-34B (Yi-34B), official chatml_direct: MPT style, no newline between turns",
    ),
    "chatml_direct",
    "mistral_direct",
    "cambrian_chatml",
)

PHI3 = _register(
    ChatTemplate(
        name="phi3",
        system=PHI3_SYSTEM,
        system_fmt="<|system|>\n{system}<|end|>",
        user_fmt="\n<|user|>\n{content}<|end|>",
        assistant_prefix="\n<|assistant|>\n",
        end_of_turn="<|end|>",
        generation_prompt="\n<|assistant|>\n",
        stop_strings=("<|end|>",),
        description="Cambrian-Phi3-3B, SeparatorStyle.PHI3",
    ),
)

PLAIN = _register(
    ChatTemplate(
        name="plain",
        system="",
        system_fmt="",
        user_fmt="{content}",
        assistant_prefix="",
        end_of_turn="\n",
        generation_prompt="",
        stop_strings=("\n",),
        images_only_user=True,
        description="stage-1 captioning: <image> + caption + '\\n'; only the caption and '\\n' are trained",
    ),
    "v0_plain",
)

SMOLLM2 = _register(
    ChatTemplate(
        name="smollm2",
        system=SMOLLM2_SYSTEM,
        system_fmt="<|im_start|>system\n{system}<|im_end|>\n",
        user_fmt="<|im_start|>user\n{content}<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        end_of_turn="<|im_end|>",
        after_turn="\n",
        generation_prompt="<|im_start|>assistant\n",
        stop_strings=("<|im_end|>",),
        description="SmolLM2-Instruct's own ChatML (newline after each <|im_end|>), for Cambrian-nano",
    ),
)


def get_template(template: str | ChatTemplate) -> ChatTemplate:
    """A template id or alias (``llama_v3`` -> llama_3, ``chatml_direct`` -> chatml, ``v1`` -> vicuna_v1)."""
    if isinstance(template, ChatTemplate):
        return template
    return TEMPLATES.get(template)


def template_ids() -> list[str]:
    """Canonical template ids (aliases excluded)."""
    return sorted({t.name for _, t in TEMPLATES.items()})
