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


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook, which adds the suffix
def pytest_collection_modifyitems(config, items):
    """`make test` runs the demo's and the study's end-to-end tests on one xdist worker (--dist loadgroup), one after
    the other: started together they each took the machine's threads and ran ~4x slower, and the demo's timed out in
    CI. pytest-xdist marks a grouped test by appending "@group" to its node id; pytest 9.2 keeps node ids elsewhere
    and the suffix silently never appears (hence pytest<9.2 in the dev extra). Fail collection instead of running the
    groups concurrently again."""
    if not getattr(config.option, "loadgroup", False):  # set on each xdist worker under --dist loadgroup
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"--dist loadgroup did not group {item.nodeid}: this pytest ({pytest.__version__}) and pytest-xdist "
                "do not work together; install the dev extra's pytest (pyproject.toml)"
            )
