"""PP-OCRv4's text-detection backbone through onnxruntime, as a frozen vision tower (offline-assets V4).

``rapidocr-onnxruntime`` ships ``ch_PP-OCRv4_det_infer.onnx``: a PP-LCNetV3 backbone, a feature-pyramid neck and
the DB text-probability head, trained for text detection. The tower cuts the graph at one backbone (or neck) tensor
(``options["output"]``; default the backbone's stride-16 stage, 192 channels, the input of the neck's stride-16
lateral branch: a 16x16 grid at 256 px) and runs the cut graph with onnxruntime on the CPU.

- No gradients: the tower is always frozen (unfreezing it is refused when the model is built).
- No parameters in our checkpoints: the ONNX file is read from the installed package (or ``name_or_path``) when
  the tower first runs, so a model that uses it needs the package wherever it is loaded.
- Preprocessing is PaddleOCR's: ImageNet mean / std applied to the **BGR** image (PaddleOCR reads images with
  OpenCV and normalises them in that channel order), so the RGB tensor is flipped before the session runs.
- Input sides must be multiples of 32.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from ...config import EncoderConfig
from ...paths import package_dir
from ...typed import ConfigError
from .base import ENCODER_BACKENDS, VisionEncoder

PACKAGE = "rapidocr_onnxruntime"
DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
# tensors of ch_PP-OCRv4_det_infer.onnx: the backbone's four stage outputs (what the neck reads)
STAGE_OUTPUTS = {4: "p2o.Add.43", 8: "p2o.Add.71", 16: "p2o.Add.147", 32: "p2o.Add.215"}
DEFAULT_OUTPUT = STAGE_OUTPUTS[16]


def model_path() -> Path | None:
    d = package_dir(PACKAGE)
    if d is None:
        return None
    p = d / "models" / DET_MODEL
    return p if p.exists() else None


def cut_graph(path: str | Path, output: str) -> bytes:
    """The ONNX model reduced to what computes ``output`` from the image input (serialised)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    known = {o for n in model.graph.node for o in n.output}
    if output not in known:
        raise ConfigError(f"{path}: no tensor named {output!r} (options.output of the ppocr_onnx tower)")
    # keep only the nodes the output depends on
    producer = {o: n for n in model.graph.node for o in n.output}
    need, stack = set(), [output]
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or id(n) in need:
            continue
        need.add(id(n))
        stack += list(n.input)
    nodes = [n for n in model.graph.node if id(n) in need]
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(
        nodes,
        model.graph.name,
        [i for i in model.graph.input if i.name in used],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        [t for t in model.graph.initializer if t.name in used],
    )
    cut = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    return cut.SerializeToString()


class PPOCRDetEncoder(VisionEncoder):
    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        if config.image_size % 32:
            raise ConfigError(f"encoder {config.id!r}: PP-OCR needs an image_size that is a multiple of 32")
        self.output = str(config.options.get("output", DEFAULT_OUTPUT))
        self._session = None
        self._lock = threading.Lock()

    def freeze(self, frozen: bool = True):
        if not frozen:
            raise ConfigError(f"encoder {self.config.id!r} runs in onnxruntime and has no gradients: it stays frozen")
        return super().freeze(True)

    def session(self):
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                path = self.config.name_or_path or model_path()
                if path is None:
                    raise FileNotFoundError(
                        "PP-OCRv4 model not found: install it with `pip install --no-deps rapidocr-onnxruntime==1.4.4`"
                    )
                so = ort.SessionOptions()
                so.intra_op_num_threads = max(1, torch.get_num_threads())
                so.log_severity_level = 3
                self._session = ort.InferenceSession(
                    cut_graph(path, self.output), so, providers=["CPUExecutionProvider"]
                )
            return self._session

    def _forward_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.detach().float().cpu().flip(1).contiguous().numpy()  # RGB -> BGR (PaddleOCR's order)
        sess = self.session()
        (y,) = sess.run([self.output], {sess.get_inputs()[0].name: x.astype(np.float32)})
        return torch.from_numpy(np.ascontiguousarray(y)).permute(0, 2, 3, 1).to(pixel_values.device)

    def __getstate__(self):  # the session is rebuilt where the tower is used
        state = dict(self.__dict__)
        state["_session"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def build_ppocr_det(cfg: EncoderConfig, load_weights: bool = True) -> PPOCRDetEncoder:
    return PPOCRDetEncoder(cfg)  # weights live in the ONNX file, read at first use


ENCODER_BACKENDS.register("ppocr_onnx", build_ppocr_det)
