"""Training pieces of the 13-label classifier: loss on target sets, splits, sampling,
augmentation and a seeded few-step run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hemoflow.classify.taxonomy import IG_LABELS, LABELS
from hemoflow.training.augment import BatchAugment
from hemoflow.training.splits import cell_split, in_cell_validation
from hemoflow.training.wbc import _item_weights, set_nll, train_network
from hemoflow.training.wbc_data import PBC_PREFIX, CellSet, junk_images, target_mask


def test_set_nll_is_minus_log_probability_of_the_set():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    one = torch.tensor([[True, False, False, False]])
    two = torch.tensor([[True, True, False, False]])
    assert float(set_nll(logits, one, smoothing=0.0)) == pytest.approx(math.log(4))
    assert float(set_nll(logits, two, smoothing=0.0)) == pytest.approx(math.log(2))


def test_unstaged_pbc_cells_allow_their_whole_group():
    assert PBC_PREFIX["IG"] == IG_LABELS
    m = target_mask(PBC_PREFIX["NEUTROPHIL"])
    assert [LABELS[i] for i in np.flatnonzero(m)] == ["band_neutrophil", "segmented_neutrophil"]


def test_cell_split_is_by_file_name_across_pbc_folders():
    names = [f"SNE_{i}.jpg" for i in range(2000)]
    frac = np.mean([in_cell_validation("pbc_maturation", n) for n in names])
    assert 0.17 < frac < 0.23
    for n in names[:200]:
        assert cell_split("pbc", f"images/neutrophil/{n}") == cell_split("pbc_train", n)
    with pytest.raises(ValueError):
        cell_split("lisc", "x.jpg")


def _tiny_set(n_per: int = 3, side: int = 128) -> CellSet:
    rng = np.random.default_rng(0)
    labs = list(LABELS) + ["ig"]
    labels = np.repeat(labs, n_per)
    targets = np.stack([target_mask(IG_LABELS if lab == "ig" else (lab,)) for lab in labels])
    cs = CellSet("t", rng.integers(0, 256, (len(labels), side, side, 3), dtype=np.uint8), targets,
                 np.array([f"c{i}" for i in range(len(labels))]), np.full(len(labels), "train"), labels,
                 np.full(len(labels), 0.1), np.full(len(labels), "rbc"))
    cs.names_source = np.where(np.arange(len(labels)) % 2 == 0, "pbc", "marrow_mll")
    return cs


def test_sampling_gives_every_label_the_same_mass_and_sets_a_third():
    cs = _tiny_set()
    w = _item_weights(cs)
    mass = {lab: w[cs.label == lab].sum() for lab in np.unique(cs.label)}
    assert mass["blast"] == pytest.approx(mass["platelet"])
    assert mass["ig"] == pytest.approx(mass["blast"] / 3)
    assert w.sum() == pytest.approx(1.0)


def test_batch_augment_shape_range_and_seed():
    x = torch.rand(4, 3, 128, 128)
    aug = BatchAugment(out=80, src_step=1.2)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 80, 80) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flat_image_stays_flat_under_geometry():
    """Border padding and any rotation keep a uniform crop uniform (no black corners)."""
    x = torch.full((2, 3, 128, 128), 0.8)
    out = BatchAugment(out=80, src_step=1.2).geometry(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.full_like(out, 0.8), atol=1e-5)


def test_junk_images_are_deterministic_non_cells():
    a, b = junk_images(5, seed=3), junk_images(5, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(x.dtype == np.uint8 and x.ndim == 3 for x in a)


def test_few_step_training_is_seeded():
    cs = _tiny_set(n_per=2)
    net1, info = train_network(cs, steps=2, batch=4, threads=1, log_every=0, seed=3)
    net2, _ = train_network(cs, steps=2, batch=4, threads=1, log_every=0, seed=3)
    s1, s2 = net1.state_dict(), net2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert info["steps"] == 2 and math.isfinite(info["final_loss"])


def test_blast_ranking_figures():
    from hemoflow.training.wbc_report import blast_ranking

    r = blast_ranking(np.array([1, 1, 0, 0], bool), np.array([0.9, 0.4, 0.5, 0.1]))
    assert (r["roc_auc"], r["average_precision"], r["sensitivity_at_precision"]) == (0.75, 0.833, 0.5)
    perfect = blast_ranking(np.array([1, 0, 1, 0, 0], bool), np.array([0.8, 0.2, 0.7, 0.1, 0.3]))
    assert perfect == {"average_precision": 1.0, "roc_auc": 1.0, "sensitivity_at_precision": 1.0, "precision": 0.9}
    assert np.isnan(blast_ranking(np.zeros(3, bool), np.ones(3))["roc_auc"])
