"""The run directory's artifact names (no imports: the CLI reads them at start-up)."""


class A:
    """Every artifact's path relative to the run root, named once. Stages declare their inputs and
    outputs with these (``saerec/*/stage.py``) and read and write through ``RunDir`` with them, so
    renaming a file is one edit here."""

    CONFIG = "config.yaml"
    PIPELINE = "pipeline.json"
    # data: the prepared log with its split, the item attributes
    DATA = "data"
    INTERACTIONS = "data/interactions.parquet"
    SEQUENCES = "data/sequences.parquet"
    ITEMS = "data/items.parquet"
    SPLIT = "data/split.json"
    # recommender: weights, model config, catalogue (dense index <-> item id), metrics, history
    RECOMMENDER = "recommender"
    WEIGHTS = "recommender/model.safetensors"
    MODEL_CONFIG = "recommender/config.json"
    CATALOGUE = "recommender/items.parquet"
    REC_METRICS = "recommender/metrics.json"
    REC_HISTORY = "recommender/history.json"
    REC_SPLIT = "recommender/split.json"
    # activations: Parquet shards of hidden states per part
    ACTIVATIONS = "activations"
    ACT_META = "activations/meta.json"
    ACT_SAE = "activations/sae"
    ACT_TEST = "activations/test"
    # sae: weights + cfg.json (architecture, normaliser, feature statistics), metrics, history
    SAE = "sae"
    SAE_WEIGHTS = "sae/sae.safetensors"
    SAE_METRICS = "sae/metrics.json"
    SAE_HISTORY = "sae/history.json"
    # interpret: feature x attribute statistics, per-attribute best feature/neuron, feature catalog
    INTERPRET = "interpret"
    PAIRS = "interpret/feature_attribute.parquet"
    ATTRIBUTES = "interpret/attributes.parquet"
    FEATURES = "interpret/catalog.parquet"
    INTERPRET_SUMMARY = "interpret/summary.json"
    # steer: linear probes, the sweep table and its summary
    STEER = "steer"
    PROBES = "steer/probes.safetensors"
    SWEEP = "steer/sweep.parquet"
    STEER_SUMMARY = "steer/summary.json"
    ISOLATION = "steer/isolation.json"
    ISOLATION_PLOT = "steer/isolation.png"
    # steer: popularity steering (saerec popsteer): the curve, its summary, per-feature effect sizes
    POPSTEER = "steer/popsteer.parquet"
    POPSTEER_SUMMARY = "steer/popsteer.json"
    POPSTEER_FEATURES = "steer/popsteer_features.parquet"
    POPSTEER_REFERENCES = "steer/popsteer_references.parquet"
    POPSTEER_PER_USER = "steer/popsteer_per_user.parquet"
    # saeeval: the SAE suite (probing, absorption, label confidence)
    SAEEVAL = "saeeval"
    EVAL_PROBING = "saeeval/probing.parquet"
    EVAL_ATTRIBUTES = "saeeval/attributes.parquet"
    EVAL_FEATURES = "saeeval/features.parquet"
    EVAL_SUMMARY = "saeeval/summary.json"
    EVAL_PLOT = "saeeval/sparse_probing.png"
    # browse: the feature browser's site (saerec browse)
    BROWSE = "browse"
    # tune: the grid's results
    TUNE = "tune"
    TUNE_RESULTS = "tune/results.parquet"
    TUNE_SUMMARY = "tune/summary.json"
