"""saerec: controllable, explainable sequential recommendations through sparse autoencoders.

The package is importable without a Ray cluster: the science lives in plain torch/numpy
modules (``saerec.data``, ``saerec.model``, ``saerec.eval``); Ray appears only in the
orchestration modules (``saerec.train.ray_train``).
"""

__version__ = "0.1.0"
