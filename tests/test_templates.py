"""Chat templates: golden strings byte-for-byte (docs/official-code.md#templates), segments/trainable flags, aliases, messages."""

import pytest

from cambrian.models.llm.templates import TEMPLATES, get_template, normalize_image_text, template_ids
from cambrian.registry import UnknownKeyError

# The official system strings, typed from the spec (not imported from the module under test).
LLAMA3_SYS = (
    "You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. \n"
    "    As a multimodal AI, you have the ability to process and analyze images. Whenever an image is present in "
    "the conversation, very carefully examine it and consider its content when formulating your response.\n"
    "    You should give concise responses to very simple questions, but provide thorough responses to more "
    "complex and open-ended questions. "
)
VICUNA_SYS = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
CHATML_SYS_FIELD = (
    "<|im_start|>system\nYou are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. As a "
    "multimodal AI, you have the ability to process and analyze images. Whenever an image is present in the "
    "conversation, very carefully examine it and consider its content when formulating your response. You should "
    "give concise responses to very simple questions, but provide thorough responses to more complex and "
    "open-ended questions."
)
PHI3_SYS_FIELD = "<|system|>\nYou are a helpful AI assistant."
SMOLLM2_SYS = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

Q = [{"role": "user", "content": "<image>\nWhat is this?"}]
CONV = [
    {"from": "human", "value": "<image>\nWhat is this?"},
    {"from": "gpt", "value": "A cube."},
    {"from": "human", "value": "Color?"},
    {"from": "gpt", "value": "Red."},
]


def test_llama3_system_string_details():
    assert len(LLAMA3_SYS) == 425
    assert get_template("llama_3").system == LLAMA3_SYS
    assert LLAMA3_SYS.count(" \n    ") == 1 and LLAMA3_SYS.count(".\n    ") == 1 and LLAMA3_SYS.endswith("questions. ")


def test_llama3_inference_prompt_golden():
    # docs/official-code.md#templates "The 8B inference prompt for one question" (no "\n\n" after <|end_header_id|>)
    expected = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>" + LLAMA3_SYS + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|><image>\nWhat is this?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>"
    )
    assert get_template("llama_3").render(Q, add_generation_prompt=True) == expected
    assert get_template("llama_3").prompt("<image>\nWhat is this?") == expected


def test_llama3_training_multiturn_golden():
    expected = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>" + LLAMA3_SYS + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|><image>\nWhat is this?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>A cube.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>Color?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>Red.<|eot_id|>"
    )
    assert get_template("llama_3").render(CONV) == expected


def test_llama_v3_alias_is_llama3():
    # docs/official-code.md#bugs B1: the official --version llama_v3 never selected the llama_3 template
    assert get_template("llama_v3") is get_template("llama_3")
    assert get_template("llama_v3").name == "llama_3"
    assert get_template("chatml_direct") is get_template("chatml")
    assert get_template("v1") is get_template("vicuna_v1")


def test_vicuna_golden():
    t = get_template("vicuna_v1")
    assert t.render(Q, add_generation_prompt=True) == VICUNA_SYS + " USER: <image>\nWhat is this? ASSISTANT:"
    assert t.render(CONV) == (
        VICUNA_SYS + " USER: <image>\nWhat is this? ASSISTANT: A cube.</s>USER: Color? ASSISTANT: Red.</s>"
    )


def test_chatml_direct_golden():
    t = get_template("chatml")
    assert t.render(Q, add_generation_prompt=True) == (
        CHATML_SYS_FIELD + "<|im_end|><|im_start|>user\n<image>\nWhat is this?<|im_end|><|im_start|>assistant\n"
    )
    assert t.render(CONV) == (
        CHATML_SYS_FIELD + "<|im_end|><|im_start|>user\n<image>\nWhat is this?<|im_end|>"
        "<|im_start|>assistant\nA cube.<|im_end|><|im_start|>user\nColor?<|im_end|>"
        "<|im_start|>assistant\nRed.<|im_end|>"
    )


def test_phi3_golden():
    t = get_template("phi3")
    assert t.render(Q, add_generation_prompt=True) == (
        PHI3_SYS_FIELD + "<|end|>\n<|user|>\n<image>\nWhat is this?<|end|>\n<|assistant|>\n"
    )
    assert t.render(CONV) == (
        PHI3_SYS_FIELD + "<|end|>\n<|user|>\n<image>\nWhat is this?<|end|>\n<|assistant|>\nA cube.<|end|>"
        "\n<|user|>\nColor?<|end|>\n<|assistant|>\nRed.<|end|>"
    )


def test_plain_golden():
    t = get_template("plain")
    conv = [{"from": "human", "value": "<image>\nDescribe briefly."}, {"from": "gpt", "value": "A red cube."}]
    assert t.render(conv) == "<image>A red cube.\n"
    assert t.render_segments(conv) == [("<image>", False), ("A red cube.\n", True)]
    assert t.render(conv[:1], add_generation_prompt=True) == "<image>"


def test_smollm2_golden():
    t = get_template("smollm2")
    assert t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True) == (
        "<|im_start|>system\n" + SMOLLM2_SYS + "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert t.render([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]) == (
        "<|im_start|>system\n" + SMOLLM2_SYS + "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )


def test_segments_trainable_parts():
    segs = get_template("llama_3").render_segments(CONV)
    assert [s for s, tr in segs if tr] == ["A cube.<|eot_id|>", "Red.<|eot_id|>"]
    assert [tr for _, tr in segs] == [False, True, False, True]
    assert [s for s, tr in get_template("vicuna_v1").render_segments(CONV) if tr] == [" A cube.</s>", " Red.</s>"]
    assert [s for s, tr in get_template("chatml").render_segments(CONV) if tr] == [
        "A cube.<|im_end|>",
        "Red.<|im_end|>",
    ]
    assert [s for s, tr in get_template("phi3").render_segments(CONV) if tr] == ["A cube.<|end|>", "Red.<|end|>"]
    smol = get_template("smollm2").render_segments(CONV)
    assert [s for s, tr in smol if tr] == ["A cube.<|im_end|>", "Red.<|im_end|>"]
    assert smol[-1] == ("\n", False)  # the separator after <|im_end|> is not trained
    for name in template_ids():  # render == concatenation of segments
        t = get_template(name)
        for gen in (False, True):
            msgs = CONV if not gen else CONV[:3]
            assert t.render(msgs, add_generation_prompt=gen) == "".join(
                s for s, _ in t.render_segments(msgs, None, gen)
            )


def test_template_ids_and_unknown():
    assert template_ids() == ["chatml", "llama_3", "phi3", "plain", "smollm2", "vicuna_v1"]
    with pytest.raises(UnknownKeyError, match="llama_3"):
        get_template("llama3")
    assert "llama_v3" in TEMPLATES


def test_system_precedence():
    t = get_template("llama_3")
    custom = t.render(Q, system="Be brief.", add_generation_prompt=True)
    assert custom.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>Be brief.<|eot_id|>")
    in_msgs = [{"role": "system", "content": "S"}] + Q
    assert t.render(in_msgs, system="ignored", add_generation_prompt=True).startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>S<|eot_id|>"
    )
    assert (
        get_template("chatml")
        .render(Q, system="X", add_generation_prompt=True)
        .startswith("<|im_start|>system\nX<|im_end|><|im_start|>user\n")
    )


def test_image_normalisation():
    # official preprocess_multimodal: a single tag moves to the front, followed by "\n" and the stripped text
    assert normalize_image_text("What is this?\n<image>") == "<image>\nWhat is this?"
    assert normalize_image_text("<image>What is this? ") == "<image>\nWhat is this?"
    assert normalize_image_text("  <image>\nQ") == "<image>\nQ"
    assert normalize_image_text("no image") == "no image"
    # several images stay where they are (interleaved prompts)
    assert normalize_image_text("<image>\nfirst <image>\nsecond") == "<image>\nfirst <image>\nsecond"
    t = get_template("llama_3")
    two = [{"role": "user", "content": "Compare <image> and <image>."}]
    assert t.render(two, add_generation_prompt=True).endswith(
        "<|start_header_id|>user<|end_header_id|>Compare <image> and <image>.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>"
    )


def test_message_validation():
    t = get_template("vicuna_v1")
    with pytest.raises(ValueError, match="alternate"):
        t.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(ValueError, match="unknown role"):
        t.render([{"role": "robot", "content": "a"}])
    with pytest.raises(ValueError, match="end with a user turn"):
        t.render(CONV, add_generation_prompt=True)
    # a leading gpt turn is skipped, as in the official preprocess
    assert t.render([{"from": "gpt", "value": "x"}] + CONV[:2]) == t.render(CONV[:2])


def test_stop_token_ids_tiny():
    from cambrian.models.llm.loader import tiny_tokenizer

    tok = tiny_tokenizer()
    # ids: </s>=2, <|eot_id|>=7, <|im_end|>=9, <|end|>=13 (order of TINY_SPECIAL_TOKENS)
    assert get_template("llama_3").stop_token_ids(tok) == [7, 2]  # <|eot_id|> first, not <|end_of_text|> (=4)
    assert get_template("vicuna_v1").stop_token_ids(tok) == [2]
    assert get_template("chatml").stop_token_ids(tok) == [9, 2]
    assert get_template("phi3").stop_token_ids(tok) == [13, 2]
    assert get_template("llama_3").strip_reply(" Paris.<|eot_id|><|start_header_id|>") == "Paris."
