"""The command line's error boundary: a mistake in the user's input is one `error:` line and exit 2 (the traceback
only with --debug); a broken contract between the program's parts is a bug and crashes with its traceback."""

from __future__ import annotations

import pytest
from helpers import one_error_line

from cambrian.cli.main import main


def test_user_mistakes_are_one_error_line(tmp_path, capsys):
    from cambrian.data.synthetic import make_synthetic_data

    data = make_synthetic_data(tmp_path / "d", n=4)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("lr: [1, 2\nepochs: 1\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: toy\nlearning_rate: 0.1\n")
    arr = tmp_path / "trunc.json"
    arr.write_text('[{"id": 1, "conversations": []}, {"id": 2')
    cases = [
        (["info", "no-such-model"], "unknown model preset 'no-such-model'; valid presets:"),
        (["train", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["train", str(bad_yaml)], "bad.yaml"),
        (["train", str(typo)], "learning_rate"),
        (["train", str(typo), "notanoverride"], "is not key=value"),
        (["data", "validate", str(tmp_path / "nope.jsonl")], "nope.jsonl"),
        (["data", "validate", str(arr)], "truncated JSON array"),
        (
            ["eval", "score", "--bench", "no-such-bench", "--data", str(data), "--predictions", str(data)],
            "no-such-bench",
        ),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert needle in line, (argv, line)
    with pytest.raises(FileNotFoundError):
        main(["--debug", "train", str(tmp_path / "missing.yaml")])


def test_a_broken_contract_is_a_traceback_and_bad_input_one_line(monkeypatch, capsys):
    """A bare ValueError is no longer taken as the user's fault: it propagates with its traceback (exit 1 from the
    console script); the same command with input at fault (InputError / ConfigError) is one line and exit 2."""
    import cambrian.cli.info as info
    from cambrian.errors import InputError
    from cambrian.typed import ConfigError

    def broken(args):
        raise ValueError("features[0] has shape (1, 2), expected [N=1, 3, 3, 8]")

    monkeypatch.setattr(info, "run", broken)
    with pytest.raises(ValueError, match="expected"):
        main(["info", "tiny"])
    for err in (InputError("prompt 0 has 1 <image> placeholders but 0 images"), ConfigError("lr must be > 0")):

        def bad_input(args, err=err):
            raise err

        monkeypatch.setattr(info, "run", bad_input)
        assert main(["info", "tiny"]) == 2
        assert one_error_line(capsys) == f"error: {err}"


def test_contract_checks_raise_plain_value_errors_and_input_checks_user_errors():
    """Where the two kinds come from: a connector fed the wrong features (a bug of the caller) vs. a prompt whose
    placeholders do not match its images (the user's input)."""
    import torch
    from helpers import make_vlm

    from cambrian.errors import UserError

    model = make_vlm("cambrian")
    with pytest.raises(ValueError) as e:
        model.connector([torch.zeros(1, 3, 3, 8)], [(8, 8)])
    assert not isinstance(e.value, UserError)
    with pytest.raises(UserError, match="1 <image> placeholders but 0 images"):
        model.generate_text(["<image>\nwhat?"], [[]], max_new_tokens=2)
