"""Contract of the classifier: config, network, predict, weights files and ModelError."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hemoflow.classify.config import ModelIOConfig, default_io_config
from hemoflow.classify.model import WbcClassifier, WbcNet, load_model, save_model
from hemoflow.errors import HemoflowError, ModelError, UnsupportedImageError


def _crops(n, s, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, s, s, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- config


def test_io_config_roundtrip_and_fields():
    io = ModelIOConfig(classes=("x", "y"), mpp=0.3, mean=(0.1, 0.2, 0.3), std=(1, 2, 3))
    assert io.input_size == 96
    assert io.field_of_view_um == pytest.approx(28.8)
    assert io.window_px(0.25) == pytest.approx(115.2)
    d = io.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert ModelIOConfig.from_dict(d) == io
    assert isinstance(ModelIOConfig.from_dict(d).classes, tuple)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"classes": ("a",)},
        {"classes": ("a", "a")},
        {"classes": "ab"},
        {"classes": ("a", "")},
        {"classes": ("a", "b"), "mpp": 0},
        {"classes": ("a", "b"), "mpp": "x"},
        {"classes": ("a", "b"), "input_size": 4},
        {"classes": ("a", "b"), "input_size": 96.0},
        {"classes": ("a", "b"), "std": (1, 0, 1)},
        {"classes": ("a", "b"), "mean": (1, 2)},
    ],
)
def test_io_config_rejects_bad_values(kwargs):
    with pytest.raises(ModelError):
        ModelIOConfig(**kwargs)


def test_io_config_from_dict_missing_key():
    with pytest.raises(ModelError, match="lacks"):
        ModelIOConfig.from_dict({"classes": ["a", "b"]})
    assert issubclass(ModelError, HemoflowError)


def test_default_io_config_does_not_import_torch():
    code = (
        "import sys; from hemoflow.classify.config import default_io_config; io = default_io_config(); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(io.input_size, io.mpp, len(io.classes))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "80"
    io = default_io_config()
    assert float(out[1]) == io.mpp and int(out[2]) == len(io.classes)


# ---------------------------------------------------------------------------- network


def test_network_shapes_and_size():
    net = WbcNet(9).eval()
    with torch.inference_mode():
        y = net(torch.zeros(2, 3, 96, 96))
    assert y.shape == (2, 9)
    n_params = sum(p.numel() for p in net.parameters())
    assert 100_000 < n_params < 1_000_000


def test_predict_shapes_probs_and_labels(tiny_clf, tiny_io):
    labels, probs = tiny_clf.predict(_crops(5, 32))
    assert probs.dtype == np.float32 and probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert labels == [tiny_io.classes[i] for i in probs.argmax(1)]
    labels, probs = tiny_clf.predict(np.zeros((0, 32, 32, 3), np.uint8))
    assert labels == [] and probs.shape == (0, 3)


def test_predict_is_deterministic_and_batch_independent(tiny_clf):
    x = _crops(37, 32, seed=1)
    l1, p1 = tiny_clf.predict(x, batch_size=256)
    l2, p2 = tiny_clf.predict(x, batch_size=256)
    np.testing.assert_array_equal(p1, p2)
    l3, p3 = tiny_clf.predict(x, batch_size=5)
    assert l1 == l3
    np.testing.assert_allclose(p1, p3, atol=1e-5)


def test_tta_averages_the_eight_dihedral_views(tiny_clf):
    """tta=True is the mean softmax over the 8 flips/quarter turns, hence invariant to them."""
    x = _crops(6, 32, seed=3)
    views = [np.rot90(b, k, axes=(1, 2)) for b in (x, x[:, :, ::-1]) for k in range(4)]
    assert len({v.tobytes() for v in views}) == 8
    ref = np.mean([tiny_clf.predict(np.ascontiguousarray(v))[1] for v in views], axis=0)
    labels, probs = tiny_clf.predict(x, tta=True)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, ref, atol=1e-6)
    assert labels == [tiny_clf.io.classes[i] for i in ref.argmax(1)]
    for v in (views[1], views[6]):
        np.testing.assert_allclose(tiny_clf.predict(np.ascontiguousarray(v), tta=True)[1], probs, atol=1e-5)
    assert not np.allclose(tiny_clf.predict(x)[1], probs, atol=1e-4)  # single view differs
    assert tiny_clf.predict(x[:0], tta=True)[1].shape == (0, 3)


def test_memory_format_and_autocast_paths_agree(tiny_net, tiny_io):
    """channels_last and autocast (bf16 on CPU here; the CUDA path uses the same code)."""
    x = _crops(8, 32, seed=2)
    ref = WbcClassifier(tiny_net, tiny_io, channels_last=False, amp=False)
    _, p_ref = ref.predict(x)
    cl = WbcClassifier(tiny_net, tiny_io, channels_last=True, amp=False)
    kernels = [p for p in cl.network.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    _, p_cl = cl.predict(x)
    np.testing.assert_allclose(p_cl, p_ref, atol=1e-5)
    amp = WbcClassifier(tiny_net, tiny_io, channels_last=True, amp=True)
    assert amp.amp_dtype == torch.bfloat16
    _, p_amp = amp.predict(x)
    assert p_amp.dtype == np.float32
    np.testing.assert_allclose(p_amp, p_ref, atol=0.05)


@pytest.mark.parametrize("channels_last", [True, False])
def test_device_path_matches_host_path(tiny_net, tiny_io, channels_last):
    """The accelerator route (uint8 upload, normalised on the device, one transfer back) runs
    on any torch device; on the CPU it must give the host route's logits, read-only input too."""
    x = _crops(13, 32, seed=4)
    clf = WbcClassifier(tiny_net, tiny_io, channels_last=channels_last, amp=False)
    ref = clf.predict_logits(x, batch_size=5)
    x.setflags(write=False)
    got = clf._predict_logits_device(x, 5)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert clf._predict_logits_device(x[:0], 5).shape == (0, len(tiny_io.classes))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_matches_cpu(tiny_net, tiny_io):
    x = _crops(64, 32, seed=3)
    _, p_cpu = WbcClassifier(tiny_net, tiny_io, channels_last=False).predict(x)
    import copy

    gpu = WbcClassifier(copy.deepcopy(tiny_net), tiny_io, device="cuda")
    assert gpu.amp and gpu.channels_last
    _, p_gpu = gpu.predict(x)
    np.testing.assert_allclose(p_gpu, p_cpu, atol=0.05)
    _, t_cpu = WbcClassifier(tiny_net, tiny_io, channels_last=False).predict(x, tta=True)
    np.testing.assert_allclose(gpu.predict(x, tta=True)[1], t_cpu, atol=0.05)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 32, 32, 3), np.float32),
        np.zeros((2, 31, 32, 3), np.uint8),
        np.zeros((32, 32, 3), np.uint8),
        np.zeros((2, 32, 32, 4), np.uint8),
        [[0]],
    ],
)
def test_predict_rejects_bad_crops(tiny_clf, bad):
    with pytest.raises(UnsupportedImageError):
        tiny_clf.predict(bad)
    with pytest.raises(TypeError):  # also catchable as the builtin kind
        tiny_clf.predict(bad)


# ------------------------------------------------------------------------------ files


def test_save_load_roundtrip(tiny_weights, tiny_clf, tiny_io):
    clf = load_model(tiny_weights)
    assert clf.io == tiny_io
    assert len(clf.sha256) == 64
    side = json.loads(tiny_weights.with_suffix(".json").read_text())
    assert side["sha256"] == clf.sha256 and side["note"] == "test"
    assert clf.metadata["note"] == "test"
    x = _crops(6, 32, seed=4)
    np.testing.assert_allclose(clf.predict(x)[1], tiny_clf.predict(x)[1], atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_corrupt_and_truncated_file(tmp_path, tiny_weights):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"\x00not a model" * 100)
    with pytest.raises(ModelError, match="corrupt"):
        load_model(bad)
    data = tiny_weights.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        load_model(cut)


def test_not_a_hemoflow_model(tmp_path):
    p = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, p)
    with pytest.raises(ModelError, match="not a hemoflow"):
        load_model(p)


def test_mismatched_classes_and_architecture(tmp_path, tiny_net, tiny_io):
    # four classes declared, three logits stored
    io4 = ModelIOConfig(classes=("a", "b", "c", "d"), input_size=32, mpp=0.3)
    p = tmp_path / "m.pt"
    save_model(p, tiny_net, io4, arch={"name": "WbcNet", "widths": [8, 8, 16, 16]})
    with pytest.raises(ModelError, match="do not match"):
        load_model(p)
    save_model(p, tiny_net, tiny_io, arch={"name": "Unknown"})
    with pytest.raises(ModelError, match="architecture"):
        load_model(p)


def test_sidecar_mismatch(tmp_path, tiny_weights):
    side = tiny_weights.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["sha256"] = "0" * 64
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="sha256"):
        load_model(tiny_weights)
    side.write_text("{not json")
    with pytest.raises(ModelError, match="JSON"):
        load_model(tiny_weights)
