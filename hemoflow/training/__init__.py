"""Everything that fits or trains a model from data.

The runtime layers (``kernels``, ``stages``, ``classify`` inference, ``pipeline``, ``jobs``)
never import this package; scripts and ``hemoflow train`` do.
"""
