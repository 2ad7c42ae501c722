import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _register_toy_model() -> None:
    """``model: toy`` (or a directory a ToyVLM saved) loads the second VLM implementation of tests/toy_vlm.py."""
    from pathlib import Path

    from toy_vlm import ToyVLM

    from cambrian.models.vlm import MODEL_SOURCES, ModelSource, register_model_source

    if any(s.name == "toy" for s in MODEL_SOURCES):
        return
    register_model_source(
        ModelSource(
            "toy",
            matches=lambda spec: spec == "toy" or (Path(spec) / "toy_config.json").is_file(),
            load=lambda spec: ToyVLM() if spec == "toy" else ToyVLM.from_pretrained(spec),
            files=ToyVLM.saved_files,
        )
    )


_register_toy_model()
