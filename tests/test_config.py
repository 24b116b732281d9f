"""Validated choices: every enumerated config value is a Literal (or carries a check) in its type,
and a bad value is one line listing the valid ones, exit 2, before any work starts."""

import os
import subprocess
import sys
import typing

import pytest

from conftest import error_lines

from saerec.cli import main
from saerec.config import ModelConfig, RunConfig, TrainConfig, _hints, _is_choice, apply_overrides
from saerec.errors import UsageError
from saerec.sae.base import SAEConfig

# one bad value per choice field, and the line that must name the valid ones
BAD = {
    "train.loss": ("cee", "train.loss: 'cee' is not one of 'ce', 'sampled', 'bce'"),
    "train.negatives": ("popular", "train.negatives: 'popular' is not one of 'uniform', 'inbatch'"),
    "train.windows": ("first", "train.windows: 'first' is not one of 'all', 'last'"),
    "sae.kind": ("gated", "sae.kind: 'gated' is not one of 'relu', 'topk', 'batchtopk', 'jumprelu', 'matryoshka'"),
    "sae.recon": ("l1", "sae.recon: 'l1' is not one of 'squared', 'l2'"),
    "sae.normalization": ("zscore", "sae.normalization: 'zscore' is not one of 'global', 'per_dim', 'none'"),
    "sae.b_dec_init": ("median", "sae.b_dec_init: 'median' is not one of 'mean', 'geometric_median'"),
    "steer.mode": ("mul", "steer.mode: 'mul' is not one of 'set', 'add', 'scale'"),
    "steer.positions": ("all", "steer.positions: 'all' is not one of 'last'"),
    "steer.splices": ("delta,recon", "steer.splices: 'recon' is not one of 'delta', 'reconstruction'"),
    "model.dropout": ("1.5", "model.dropout: 1.5 is not in [0, 1)"),
    "model.attn_dropout": ("-0.1", "model.attn_dropout: -0.1 is not in [0, 1)"),
    "train.mask_prob": ("1", "train.mask_prob: 1.0 is not in [0, 1)"),
    "train.precision": ("fp16", "train.precision: 'fp16' is not one of 'auto', 'fp32', 'bf16'"),
    "sae_train.precision": ("half", "sae_train.precision: 'half' is not one of 'auto', 'fp32', 'bf16'"),
    "data.synthetic_preset": ("ml-25m", "data.synthetic_preset: 'ml-25m' is not one of 'small', 'ml-20m'"),
    "model.arch": ("gpt-rec", "model.arch: 'gpt-rec' is not one of 'gptrec', 'sasrec', 'bert4rec' "
                              "nor a factory 'package.module:function'"),
}
# numbers with a range (saerec/checks.py): one bad value each
POSITIVE = ["data.popularity_buckets", "data.synthetic_users", "data.synthetic_items", "data.synthetic_genres",
            "split.val_users", "model.n_layers", "model.n_heads", "model.d_model", "model.max_len", "train.epochs",
            "train.patience", "train.num_negatives", "train.num_workers", "train.eval_batch_size",
            "activations.actors", "activations.users_per_batch", "activations.object_store_mb", "activations.block_mb",
            "sae.n_latents", "sae.k", "sae.k_aux", "sae.dead_window", "sae.batch_size", "sae.epochs", "sae.steps",
            "sae.shuffle_buffer", "sae_train.num_workers", "steer.probe_rows", "steer.k", "steer.eval_positions", "steer.max_users",
            "steer.batch_size", "steer.score_mb", "sae_eval.sample_rows", "sae_eval.batch_rows"]
BAD.update({k: ("0", f"{k}: 0 must be >= 1") for k in POSITIVE})
BAD.update({k: ("0", f"{k}: 0.0 must be > 0.0") for k in ("train.lr", "train.cpus_per_worker", "sae.lr", "data.synthetic_scale",
                                                            "sae.jump_bandwidth", "steer.value_step",
                                                            "sae_eval.probe_c")})
BAD.update({k: ("-1", f"{k}: -1.0 must be >= 0.0") for k in ("train.weight_decay", "sae.l1", "sae.auxk_alpha",
                                                               "sae.jump_init_threshold", "sae.l0")})
BAD.update({k: ("1", f"{k}: 1.0 is not in (0, 1)") for k in ("split.test_fraction", "split.sae_fraction")})
BAD.update({"train.batch_tokens": ("fast", "train.batch_tokens: 'fast' is not a valid value (must be int, got 'fast'; "
                                          "'fast' is not one of 'auto')")})
BAD.update({"train.ce_chunk": ("-1", "train.ce_chunk: -1 must be >= 0"),
            "train.max_failures": ("-2", "train.max_failures: -2 must be >= -1"),
            "sae_train.max_failures": ("-2", "sae_train.max_failures: -2 must be >= -1"),
            "sae.matryoshka_prefixes": ("0.5,0.25,1", "sae.matryoshka_prefixes: [0.5, 0.25, 1.0] must be strictly "
                                                      "increasing fractions in (0, 1] ending at 1.0"),
            "sae_eval.min_label_confidence": ("2", "sae_eval.min_label_confidence: 2.0 is not in [0, 1]"),
            "sae_eval.k_values": ("0,5", "sae_eval.k_values: [0, 5] must be a non-empty list of latent counts >= 1")})
LITERAL = {"train.loss", "train.negatives", "train.windows", "sae.kind", "sae.recon", "sae.normalization",
           "sae.b_dec_init", "steer.mode", "steer.positions", "steer.splices", "train.precision",
           "sae_train.precision", "data.synthetic_preset"}
FREE = set(BAD) - LITERAL                       # checked by a function, not a fixed list


def choice_keys() -> set[str]:
    cfg = RunConfig()
    return {f"{s}.{k}" for s in _hints(RunConfig) for k, tp in _hints(type(getattr(cfg, s))).items() if _is_choice(tp)}


def test_every_choice_field_has_a_bad_value_case():
    """A new Literal field without a case here fails this test (and the table stays honest)."""
    assert choice_keys() == set(BAD)


@pytest.mark.parametrize("key", sorted(BAD))
def test_bad_choice_exits_2_before_any_work(key, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    value, line = BAD[key]
    assert main(["train", "--run", str(tmp_path / "run"), "--set", f"{key}={value}"]) == 2
    assert error_lines(capsys.readouterr().err) == [f"saerec: error: {line}"]
    assert not (tmp_path / "run").exists()          # failed while resolving the config: no run directory


def test_console_script_rejects_a_typo_in_train_loss(tmp_path):
    """The issue's command, through the installed entry point."""
    p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "saerec"), "train", "--run", str(tmp_path / "r"),
                        "--set", "train.loss=cee"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == f"saerec: error: {BAD['train.loss'][1]}"


def test_every_listed_choice_is_accepted_and_defaults_are_unchanged(tmp_path):
    cfg = RunConfig()
    assert (cfg.train.loss, cfg.train.negatives, cfg.train.windows) == ("ce", "uniform", "all")
    assert (cfg.sae.kind, cfg.sae.recon, cfg.sae.normalization, cfg.sae.b_dec_init) == ("topk", "squared", "global", "mean")
    assert (cfg.steer.mode, cfg.steer.positions, cfg.steer.splices) == ("set", "last", ["delta", "reconstruction"])
    assert (cfg.model.arch, cfg.model.dropout, cfg.model.attn_dropout, cfg.train.mask_prob) == ("gptrec", 0.1, 0.0, 0.2)
    for key in sorted(choice_keys() - FREE):
        section, name = key.split(".")
        tp = _hints(type(getattr(cfg, section)))[name]
        literal = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
        for choice in typing.get_args(literal):
            apply_overrides(cfg, [f"{key}={choice}"])
            assert getattr(getattr(cfg, section), name) in (choice, [choice])
    cfg.save(tmp_path / "c.yaml")
    assert RunConfig.load(tmp_path / "c.yaml") == cfg


def test_sections_check_their_choices_when_built(tmp_path):
    """Direct construction, a config file and a Ray worker's SAEConfig(**dict) all go through the check."""
    with pytest.raises(UsageError, match=r"^train.loss: 'cee' is not one of 'ce', 'sampled', 'bce'$"):
        TrainConfig(loss="cee")
    with pytest.raises(UsageError, match=r"^sae.kind: 'gated' is not one of"):
        SAEConfig(kind="gated")
    p = tmp_path / "c.yaml"
    p.write_text("sae:\n  b_dec_init: median\n")
    with pytest.raises(UsageError, match=r"^sae.b_dec_init: 'median' is not one of 'mean', 'geometric_median'$"):
        RunConfig.load(p)


def test_a_free_string_carries_its_own_check():
    """model.arch: a built-in name or any ``package.module:function`` factory, checked by a function."""
    cfg = apply_overrides(RunConfig(), ["model.arch=my_pkg.models:build", "model.factory_kwargs={d: 8}"])
    assert (cfg.model.arch, cfg.model.factory_kwargs) == ("my_pkg.models:build", {"d": 8})
    assert ModelConfig(arch="bert4rec").arch == "bert4rec"
    with pytest.raises(UsageError, match=r"^model.arch: 'my_pkg.models' is not one of"):
        ModelConfig(arch="my_pkg.models")
    with pytest.raises(UsageError, match=r"^model.arch must be str, got 3$"):
        ModelConfig(arch=3)
    with pytest.raises(UsageError, match=r"^model.factory_kwargs must be dict, got 'd=8'$"):
        apply_overrides(cfg, ["model.factory_kwargs=d=8"])


@pytest.mark.parametrize("text, needle", [
    ("- train\n", "a config must be a mapping of sections"),
    (None, "cannot read"),                          # a directory
])
def test_unreadable_config_files_are_usage_errors(text, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    assert main(["train", "--run", str(tmp_path / "run"), "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(error_lines(err)) == 1 and needle in err, err


def test_float_fields_take_exponent_notation_without_a_dot():
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; ``--set train.lr=1e-4`` must still mean 0.0001,
    and a word is still refused with the field's name."""
    cfg = apply_overrides(RunConfig(), ["train.lr=1e-4", "sae.l1=3E-1"])
    assert cfg.train.lr == 1e-4 and cfg.sae.l1 == 0.3
    with pytest.raises(UsageError, match="train.lr must be float, got 'fast'"):
        apply_overrides(RunConfig(), ["train.lr=fast"])
