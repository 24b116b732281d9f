"""Sparse autoencoders over GPTRec hidden states: one interface (encode, decode, forward, a config
dataclass) and one small module per kind.

- ``relu``: ReLU + L1, the paper's SAE (squared L2 reconstruction by default; ``recon="l2"``
  for the unsquared norm of the authors' dictionary_learning version)
- ``topk``: TopK (the default kind) and BatchTopK (BatchTopK keeps a global threshold for
  batch-independent inference); ``matryoshka``: BatchTopK with nested dictionary prefixes
- ``jumprelu``: JumpReLU with a straight-through threshold and an L0 penalty
"""

from .base import SAEConfig, SAEOutput, SparseAutoencoder, build_sae, load_sae, save_sae  # noqa: F401
from .normalize import Normalizer  # noqa: F401
