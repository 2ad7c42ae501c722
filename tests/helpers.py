"""Small builders shared by several test modules (import as ``from helpers import ...``; pytest puts tests/ on
sys.path)."""

from __future__ import annotations

from pathlib import Path


def one_error_line(capsys) -> str:
    """The single ``error: ...`` line a user mistake prints on stderr (asserts there is exactly one)."""
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def toy_train_config(tmp_path, data, **kw):
    """A ``TrainConfig`` for the toy model on a synthetic LLaVA file ``data`` (images in ``data.parent/images``):
    one epoch, micro-batch 4, no warmup, no periodic checkpoints, no loggers; ``kw`` overrides any field."""
    from cambrian.train.config import TrainConfig

    base = dict(
        model="toy",
        stage=2,
        data=[{"path": str(data), "images": str(data.parent / "images")}],
        output_dir=str(tmp_path / "out"),
        micro_batch_size=4,
        grad_accum=1,
        epochs=1,
        lr=1e-2,
        warmup_ratio=0.0,
        num_workers=0,
        save_steps=0,
        save_total_limit=1,
        report_to=[],
        progress=False,
        bad_check_after=0,
        sampler="random",
    )
    base.update(kw)
    return TrainConfig(**base)


# A real CambrianModel small enough for trainer tests: two tiny towers, SVA with one in-LLM layer, a random LLM.
TINY_CAMBRIAN = {
    "name": "tiny-train-test",
    "encoders": ["tiny-clip", "tiny-siglip"],
    "connector": {
        "type": "sva",
        "hidden_size": 32,
        "image_token_len": 16,
        "query_num_list": [16],
        "depth": 1,
        "num_heads": 2,
        "num_llm_layers": 1,
    },
    "llm": {"backend": "random", "tokenizer": "tiny", "template": "llama_3", "max_length": 256},
}


def tiny_cambrian(seed: int = 0):
    """The ``VLM`` the package ships (``CambrianModel``), built from ``TINY_CAMBRIAN`` with ``seed``."""
    import torch

    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.presets.models import config_from_mapping

    torch.manual_seed(seed)
    return CambrianModel.from_config(config_from_mapping(TINY_CAMBRIAN))


def make_vlm(kind: str, seed: int = 0):
    """One of the two VLM implementations the trainer tests run on: ``toy`` (tests/toy_vlm.py) or ``cambrian``."""
    if kind == "cambrian":
        return tiny_cambrian(seed)
    import torch
    from toy_vlm import ToyVLM

    torch.manual_seed(seed)
    return ToyVLM()


VLM_KINDS = ["toy", "cambrian"]


def set_context_length(model, n: int):
    """Give either VLM kind of :func:`make_vlm` a context of ``n`` positions (their configs keep it apart)."""
    (model.config.llm if hasattr(model.config, "llm") else model.config).max_length = n
    return model


def sensitive_tiny_model():
    """The random ``tiny`` preset with large random LLM and connector weights, so that the prompt and the image change
    the greedy answer (at its default init the tiny model answers the same whatever it is shown): serving and
    adapter tests can then tell a lost image or a mixed-up request from a right one."""
    import torch

    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.presets.models import load_preset

    torch.manual_seed(0)
    model = CambrianModel.from_config(load_preset("tiny")).eval()
    with torch.no_grad():
        for _, p in model.llm.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
        for name, p in model.connector.named_parameters():
            if p.dim() >= 2 or "newline" in name:
                p.normal_(0, 0.5)
    return model


def sensitive_toy_model():
    """The second implementation (tests/toy_vlm.py) with large random weights, so that prompts and images change its
    greedy answer (as :func:`sensitive_tiny_model` for ``CambrianModel``)."""
    import torch
    from toy_vlm import ToyVLM

    torch.manual_seed(0)
    model = ToyVLM().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.5)
    return model


ENGINE_CORPUS = Path(__file__).parent / "fixtures" / "engine_corpus"


def build_engine_corpus(root: Path) -> Path:
    """The data engine's test corpus (tests/fixtures/engine_corpus, HTML only) copied to ``root`` with its images
    drawn: 6 usable ones (PNG, JPEG, GIF with transparency, SVG...) and the bad ones the engine must count (too small,
    too many pixels, missing, outside the root, remote). Also used by benchmarks/engine_records.py."""
    import shutil

    from PIL import Image

    def img(path: Path, size, color, fmt=None):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, color).save(path, format=fmt)

    shutil.copytree(ENGINE_CORPUS, root)
    d = root / "geology" / "img"
    img(d / "stratovolcano.png", (64, 48), (120, 90, 60))
    img(d / "old.png", (40, 40), (1, 1, 1))
    img(d / "tiny.png", (8, 8), (0, 0, 0))
    img(d / "huge.png", (300, 300), (9, 9, 9))
    img(d / "refuse.png", (40, 40), (50, 0, 50))
    img(d / "server-error.png", (30, 30), (0, 50, 50))
    img(d / "quartz.jpg", (50, 40), (200, 200, 210), fmt="JPEG")
    gif = Image.new("P", (40, 40), 0)
    gif.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    gif.paste(1, (10, 10, 30, 30))  # red square on a transparent background
    gif.save(d / "eruption.gif", transparency=0)
    (d / "diagram.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">'
        '<rect x="10" y="10" width="50" height="30" fill="#ff0000"/></svg>'
    )
    return root
