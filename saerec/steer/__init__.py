"""Steering GPTRec through SAE features (or linear probes): edits, batched interventions, evaluation
sweeps, case studies and explanations. Ray-free: the CLI and the Serve deployment wrap it."""

from .edits import Edit, EditError, ResolvedEdit, parse_edit  # noqa: F401
from .intervene import Steerer  # noqa: F401
