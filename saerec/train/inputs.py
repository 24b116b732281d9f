"""What training reads from ``RUN/data``: the rec part's sequences (in batches), the validation
users' SAE-part sequences, the item index, the items table and the split's meta.

Read from ``RUN/data/sequences.parquet`` in bounded batches (:func:`~saerec.data.prepare.sequence_batches`,
:func:`~saerec.data.prepare.read_sequences`, :func:`~saerec.data.prepare.item_counts`), never from
the whole interaction log. The rec part is not held at all: ``rec_batches`` reads it again batch by
batch when the driver writes the training windows (:mod:`saerec.train.windows`), so the train
stage's memory does not grow with it (issue 21: every stage after ``data`` streams).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from ..data.prepare import SEQ_BATCH_USERS, Prepared, item_counts, read_sequences, sequence_batches
from ..data.sequences import ItemIndex, Sequences
from ..rundir import A, RunDir


@dataclass
class TrainInput:
    rec_batches: Callable[[], Iterator[Sequences]]   # the rec part, batch by batch (training windows, log_q)
    val: Sequences            # the validation users' SAE-part sequences, in split.json's val_users order
    index: ItemIndex          # dense indices over the training items (rec + sae parts)
    items: pd.DataFrame       # attribute table (saerec.data.attributes)
    meta: dict                # RUN/data/split.json

    @classmethod
    def of(cls, prep: Prepared) -> "TrainInput":
        """From a ``Prepared`` a caller already holds (the data stage's own result): no file read."""
        return cls(lambda: iter([prep.sequences("rec")]), prep.sequences("sae").select(prep.split.val_users),
                   prep.index, prep.items, prep.meta)


def read_train_input(run: RunDir, batch_users: int = SEQ_BATCH_USERS) -> TrainInput:
    """The train stage's input from ``RUN/data`` (sequences.parquet read ``batch_users`` users at a
    time, items.parquet, split.json)."""
    meta = run.read_json(A.SPLIT)
    index, _ = item_counts(run, batch_users)
    val_users = np.asarray(meta["val_users"], dtype=np.int64)
    val = read_sequences(run, "sae", index, val_users, batch_users).select(val_users)   # -> val_users order
    return TrainInput(lambda: sequence_batches(run, "rec", index, batch_users=batch_users), val, index,
                      run.read_parquet(A.ITEMS), meta)

