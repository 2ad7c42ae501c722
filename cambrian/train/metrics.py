"""Training telemetry: tqdm progress bar (loss, lr, samples/s, tokens/s), ``metrics.jsonl``, TensorBoard and
Weights & Biases when installed (both optional), and MFU on GPU."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserError
from ..utils.progress import progress_bar

# dense bf16 peak FLOP/s per device (vendor datasheets); unknown devices: no MFU
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
    "4090": 165e12,
}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for k, v in PEAK_BF16.items():
        if k in name:
            return v
    return None


def train_flops_per_token(n_llm: int, n_llm_trainable: int) -> float:
    """Matmul FLOPs per LLM token of one training step: forward 2N, activation gradients 2N (needed through the
    whole LLM even when it is frozen, because the connector sits below it), weight gradients 2 N_trainable.
    Stage 2 (all trainable) gives the usual 6N; stage 1 gives 4N. Attention score FLOPs are left out."""
    return 4.0 * n_llm + 2.0 * n_llm_trainable


class ReporterError(UserError, RuntimeError):
    """A reporter named in ``report_to`` (tensorboard, wandb) could not start."""


class MetricsLogger:
    def __init__(self, out_dir: Path, cfg, enabled: bool = True, total: int = 0, initial: int = 0):
        self.enabled = enabled
        self.bar = self.tb = self.wandb = self.f = None
        if not enabled:
            return
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.f = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")
        report = set(cfg.report_to or [])
        if "tensorboard" in report:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except Exception as e:  # noqa: BLE001 - asked for and unavailable: say so instead of training without it
                raise ReporterError(
                    f"report_to: tensorboard could not start ({type(e).__name__}: {e}); install "
                    "tensorboard or remove it from report_to"
                ) from None
        if "wandb" in report:
            try:
                import wandb  # type: ignore

                self.wandb = wandb.init(
                    project=cfg.wandb_project, config=cfg.to_dict(), dir=str(out_dir), resume="allow"
                )
            except Exception as e:  # noqa: BLE001 - asked for and unavailable: say so instead of training without it
                if self.tb is not None:
                    self.tb.close()
                raise ReporterError(
                    f"report_to: wandb could not start ({type(e).__name__}: {e}); install and log in "
                    "to wandb or remove it from report_to"
                ) from None
        if cfg.progress:
            self.bar = progress_bar(total=total, initial=initial, desc="train")

    def log(self, rec: dict, log: bool = True) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            lr = next(iter(rec["lr"].values())) if rec.get("lr") else 0.0
            post = {
                "loss": f"{rec['loss']:.4f}",
                "lr": f"{lr:.2e}",
                "samples/s": f"{rec['samples_per_s']:.1f}",
                "tok/s": f"{rec['tokens_per_s']:.0f}",
            }
            if "mfu" in rec:
                post["mfu"] = f"{100 * rec['mfu']:.1f}%"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        if not log:
            return
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        flat = {
            "train/loss": rec["loss"],
            "train/grad_norm": rec["grad_norm"],
            "perf/samples_per_s": rec["samples_per_s"],
            "perf/tokens_per_s": rec["tokens_per_s"],
        }
        flat.update({f"lr/{k}": v for k, v in rec.get("lr", {}).items()})
        if "mfu" in rec:
            flat["perf/mfu"] = rec["mfu"]
        if self.tb is not None:
            for k, v in flat.items():
                self.tb.add_scalar(k, v, rec["step"])
        if self.wandb is not None:
            self.wandb.log(flat, step=rec["step"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.f is not None:
            self.f.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
        self.bar = self.f = self.tb = self.wandb = None
