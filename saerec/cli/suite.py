"""``saerec sae-eval``: the SAE evaluation suite over a run (saerec/saeeval/) and its summary printer."""

from __future__ import annotations

from ..layout import A
from .common import add_common, stage_run


def add_parsers(sub) -> None:
    sp = sub.add_parser("sae-eval", help="judge the SAE without an LLM: k-sparse probing (SAE vs neurons vs full "
                                         "probe), absorption, label confidence, planted-genre recovery; writes RUN/saeeval/")
    add_common(sp, data=False)


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def print_sae_eval(s: dict) -> None:
    p = s["probing"]
    for k in map(str, s["k_values"]):
        sae, neu = p.get("sae", {}).get(k, {}), p.get("neurons", {}).get(k, {})
        print(f"  k={k:<3} held-out AUC  SAE {_f(sae.get('auc'))}  neurons {_f(neu.get('auc'))}   "
              f"F1  SAE {_f(sae.get('f1'))}  neurons {_f(neu.get('f1'))}")
    full = next(iter(p.get("full_probe", {}).values()), {})
    print(f"full linear probe AUC {_f(full.get('auc'))}; SAE beats neurons at k=1 on "
          f"{_f(s['k1_sae_beats_neurons_genres'])} of {s['k1_genres_compared']} genres; absorption fraction "
          f"{_f(s['mean_absorption_fraction'])} (full {_f(s['mean_full_absorption_rate'])})")
    print(f"label confidence: mean {_f(s['mean_label_confidence'])} over {s['alive_features']} live features, "
          f"{_f(s['labelled_fraction'])} labelled (>= {s['min_label_confidence']:g})")
    if "planted" in s:
        pl = s["planted"]
        print(f"planted genres: MCC SAE {_f(pl['mcc_sae'])} vs neurons {_f(pl['mcc_neurons'])}; directions at cosine "
              f">= {pl['threshold']:g}: SAE {_f(pl['recovered_fraction_sae'])}, neuron axes "
              f"{_f(pl['recovered_fraction_neuron_axes'])}")


def cmd_sae_eval(args) -> int:
    from ..saeeval.stage import sae_eval_stage

    run, cfg = stage_run(args)
    print_sae_eval(sae_eval_stage(run, cfg))
    print(f"wrote {run.path(A.SAEEVAL) / 'report.md'}")
    return 0


COMMANDS = {"sae-eval": cmd_sae_eval}
