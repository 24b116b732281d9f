"""``saerec sae-eval``: judging an SAE the way SAE research does (SAEBench's k-sparse probing and
absorption, metadata prediction in place of LLM auto-interpretation, planted ground truth)."""
