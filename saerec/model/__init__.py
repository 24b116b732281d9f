"""GPTRec: a GPT-2 style causal transformer over item ids, with named hidden states and one
intervention mechanism (``Intervention``) that SAE splicing, steering, probes and explanations use."""

from .gptrec import GPTRec, Intervention, ModelOutput, Where  # noqa: F401
