"""The tune stage: RUN/activations + the recommender -> RUN/tune/ (the SAE grid over Ray Tune).

It is declared like the stages of ``saerec run`` but is not one of them: its grid is an experiment
spec (``tune/*.yaml``, :class:`~saerec.tuning.experiment.TuneSpec`), not a section of the run's
config, so ``run(run, cfg)`` alone runs the default grid and ``saerec tune`` passes its spec.
It reads the SAE part's activations (training), the test part's (interpretability), the recommender
and the test sequences (NDCG@10 with each trial's reconstruction spliced in), and the catalogue.
"""

from __future__ import annotations

from ..config import RunConfig
from ..contract import Stage
from ..rundir import A, RunDir


def tune_stage(run: RunDir, cfg: RunConfig, spec=None, name: str = "sae_grid", resume: bool = False) -> dict:
    """Run (or continue) the grid ``name``; returns the summary written to ``tune/summary.json`` and
    the Table 1 view (mean and std over seeds) for printing."""
    from .experiment import TuneSpec, run_tune, table1

    df = run_tune(run, cfg, spec or TuneSpec(), name=name, resume=resume)
    return {**run.read_json(A.TUNE_SUMMARY), "trials_table": table1(df)}


STAGE = Stage("tune", ("sae",), (A.ACTIVATIONS, A.WEIGHTS, A.SEQUENCES, A.CATALOGUE),
              (A.TUNE_RESULTS, A.TUNE_SUMMARY), tune_stage)
