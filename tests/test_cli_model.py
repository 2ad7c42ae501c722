"""The model-facing CLI: `cambrian --help`, `cambrian info`, `cambrian chat`."""

import json

import numpy as np
import pytest
from PIL import Image

from cambrian.cli.main import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    from cambrian.cli.main import build_parser

    text = build_parser().format_help()
    for name in COMMANDS:
        assert name in text


def test_info_cambrian_8b_counts_match_the_released_checkpoint(capsys):
    assert main(["info", "cambrian-8b", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["connector"] == 303_154_176
    assert d["connector_breakdown"]["vision_sampler_0"] == 47_296_512
    assert d["connector_breakdown"]["vision_sampler_layers"] == 10 * 22_056_960
    assert d["llm"] == 8_030_261_248
    assert d["visual_tokens_per_square_image"] == 600


def test_info_text_output_for_nano(capsys):
    assert main(["info", "nano"]) == 0
    out = capsys.readouterr().out
    assert "visual tokens per square image: 72" in out
    assert "in-LLM SVA after LLM layers: [0, 8, 16, 24]" in out


def test_info_unknown_preset_lists_presets(capsys):
    assert main(["info", "no-such-model"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: unknown model preset 'no-such-model'"), err
    assert "valid presets: " in err[0] and "cambrian-8b" in err[0]
    with pytest.raises(KeyError, match="valid presets: .*cambrian-8b"):  # --debug: the exception itself
        main(["--debug", "info", "no-such-model"])


def test_chat_answers_once_with_tiny_model(tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(img)
    assert (
        main(
            [
                "chat",
                "--model",
                "tiny",
                "--image",
                str(img),
                "--prompt",
                "what?",
                "--max-new-tokens",
                "4",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    cap = capsys.readouterr()
    assert isinstance(cap.out, str)
    # a bare preset: one warning line saying the answers ignore the image
    warn = [line for line in cap.err.splitlines() if line.startswith("warning:")]
    assert len(warn) == 1 and "never trained" in warn[0] and "ignore the image" in warn[0]


def test_chat_with_a_trained_checkpoint_does_not_warn(tmp_path, capsys):
    import torch

    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.presets.models import load_preset

    torch.manual_seed(0)
    CambrianModel.from_config(load_preset("tiny")).save_pretrained(tmp_path / "ck")
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(img)
    assert (
        main(
            [
                "chat",
                "--model",
                str(tmp_path / "ck"),
                "--image",
                str(img),
                "--prompt",
                "what?",
                "--max-new-tokens",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "warning:" not in capsys.readouterr().err


def test_chat_reports_a_missing_image(tmp_path, capsys):
    assert main(["chat", "--model", "tiny", "--image", str(tmp_path / "nope.png"), "--prompt", "what?"]) == 2
    assert "nope.png" in capsys.readouterr().err
