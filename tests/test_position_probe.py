"""scripts/position_probe.py's linear readout: a place carried by one coordinate of the tokens is read exactly, a
place not carried at all is read at chance."""

import importlib.util
from pathlib import Path

import torch

SPEC = importlib.util.spec_from_file_location(
    "position_probe", Path(__file__).resolve().parent.parent / "scripts" / "position_probe.py"
)
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)


def test_linear_readout_reads_a_place_the_tokens_carry_and_not_one_they_do_not():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    x = torch.randn(400, 6, generator=g)
    x[:, 0] = y.float() + 0.05 * torch.randn(400, generator=g)  # the column along one axis (linear in the class)
    onehot = torch.nn.functional.one_hot(y, 4).float()
    x = torch.cat([x, 3 * onehot], 1)  # and one-hot, so a softmax classifier separates every class
    exact, within = probe.linear_readout(x[:300], y[:300], x[300:], y[300:], 4)
    assert exact == 1.0 and within == 1.0
    noise = torch.randn(400, 6, generator=g)
    exact, within = probe.linear_readout(noise[:300], y[:300], noise[300:], y[300:], 4)
    assert exact < 0.45  # chance is 0.25 on four balanced classes
