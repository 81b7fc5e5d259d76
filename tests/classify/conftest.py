"""Fixtures of the classifier tests: a tiny in-memory model and its weights file."""

from __future__ import annotations

import pytest
import torch

from hemoflow.classify.config import ModelIOConfig
from hemoflow.classify.model import WbcClassifier, WbcNet, save_model


@pytest.fixture(scope="module")
def tiny_io() -> ModelIOConfig:
    return ModelIOConfig(classes=("a", "b", "c"), input_size=32, mpp=0.3)


@pytest.fixture(scope="module")
def tiny_net(tiny_io):
    torch.manual_seed(0)
    net = WbcNet(tiny_io.n_classes, widths=(8, 8, 16, 16))
    # non-trivial batch-norm statistics, so eval mode differs from identity
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture()
def tiny_weights(tmp_path, tiny_net, tiny_io):
    path = tmp_path / "tiny.pt"
    save_model(path, tiny_net, tiny_io, arch={"name": "WbcNet", "widths": [8, 8, 16, 16], "dropout": 0.1},
               metadata={"note": "test"})
    return path


@pytest.fixture()
def tiny_clf(tiny_net, tiny_io) -> WbcClassifier:
    return WbcClassifier(tiny_net, tiny_io)
