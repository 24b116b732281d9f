"""GPTRec training: length-bucketed batches and the per-epoch loop in plain torch (``loop``),
run data-parallel by Ray Train (``ray_train``)."""
