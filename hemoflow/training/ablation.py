"""Parameters of the count ablations (``docs/experiments/ablation_counts.md``).

Switches that exist only to measure what a design choice is worth are not part of
:class:`~hemoflow.stages.SegmentParams` (production runs, job records and ledger keys never
carry them). :class:`AblationParams` adds them as fields, with the production values as
defaults, so ``AblationParams()`` analyses exactly like ``SegmentParams()``:

>>> from hemoflow.training.ablation import AblationParams
>>> AblationParams(smooth_cell=1).smooth_cell
True
>>> AblationParams().to_dict() == {**SegmentParams().to_dict(), **ABLATION_DEFAULTS}
True

The stages read a switch with :func:`hemoflow.stages.params.ablation_switch`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hemoflow.errors import HemoflowError
from hemoflow.stages.params import ABLATION_DEFAULTS, SegmentParams, _pos

__all__ = ["AblationParams", "ABLATION_DEFAULTS", "SegmentParams"]

_BOOLS = ("normalize_background", "smooth", "smooth_cell", "rbc_density_count", "platelet_count_model")


@dataclass(frozen=True)
class AblationParams(SegmentParams):
    """:class:`~hemoflow.stages.SegmentParams` plus the ablation switches.

    Parameters
    ----------

    normalize_background : bool
        Optical density relative to the measured background colour (white balance / stain
        colour normalisation); False uses pure white (255, 255, 255).
    smooth : bool
        3x3 binomial smoothing of the nucleus channel (WBCs, platelets) at the working
        scale, after the block mean.
    smooth_cell : bool
        The same for the cell channel (RBC outlines). Off by default: on BCCD it costs RBC
        accuracy (MAPE 8.9 % unsmoothed vs 9.5 % smoothed) while smoothing the nucleus
        channel helps platelets (MAE 0.379 vs 0.469); see ``docs/experiments/ablation_counts.md``.
    platelet_count_model : bool
        Let the shipped per-candidate model (:mod:`hemoflow.stages._platelet_count`)
        decide which small stained objects, found at ``platelet_candidate_frac`` of the
        platelet threshold, are platelets. False: every object above the threshold in
        the ``platelet_diameter_um`` range is one.
    rbc_density_count : bool
        With the density network: True weighs RBC rows by density mass as above; False by
        the count model's expected count.
    close_um : float
        Closing radius applied to the cell mask before hole filling (0: none; joins the
        open rims of pale RBCs, but merges neighbours -- off by default, see
        ``docs/experiments/ablation_counts.md``).
    cell_threshold_scale : float
        Multiplier of the calibrated cell threshold (< 1 picks up paler cells).
    """

    normalize_background: bool = ABLATION_DEFAULTS["normalize_background"]
    smooth: bool = ABLATION_DEFAULTS["smooth"]
    smooth_cell: bool = ABLATION_DEFAULTS["smooth_cell"]
    close_um: float = ABLATION_DEFAULTS["close_um"]
    cell_threshold_scale: float = ABLATION_DEFAULTS["cell_threshold_scale"]
    rbc_density_count: bool = ABLATION_DEFAULTS["rbc_density_count"]
    platelet_count_model: bool = ABLATION_DEFAULTS["platelet_count_model"]

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in _BOOLS:
            object.__setattr__(self, name, bool(getattr(self, name)))
        if not (float(self.close_um) >= 0):
            raise HemoflowError(f"close_um must be >= 0, got {self.close_um!r}")
        object.__setattr__(self, "close_um", float(self.close_um))
        object.__setattr__(self, "cell_threshold_scale", _pos("cell_threshold_scale", self.cell_threshold_scale))

