"""The user's side of tests/test_recbole_import.py: RecBole 1.2.0 trains its own SASRec, the way a
RecBole user would, on an atomic file that the test exported from saerec's data.

    python recbole_train.py WORK [EPOCHS]
      in:  WORK/saerec/saerec.inter   (user_id:token, item_id:token = saerec's item ids, timestamp:float)
           WORK/histories.json        a few histories as item ids, for the reference scores
      out: WORK/out/recbole.pth       RecBole's own checkpoint (the best epoch)
           WORK/out/items.json        field2id_token['item_id'][1:]: the ids of item_embedding rows 1..
           WORK/out/reference.json    RecBole's own full_sort_predict for those histories, columns 1..

Runs as a subprocess: RecBole's Config parses sys.argv, and its trainer writes ./log_tensorboard.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from saerec.contrib.recbole import numpy2_shim

CONFIG = {
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 32, "inner_size": 64, "n_layers": 2, "n_heads": 2,
    "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "loss_type": "CE", "train_neg_sample_args": None,
    "learning_rate": 0.005, "train_batch_size": 256, "eval_batch_size": 256,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
    "metrics": ["NDCG"], "topk": [10], "valid_metric": "NDCG@10",
    "use_gpu": False, "device": "cpu", "show_progress": False, "worker": 0, "seed": 2020, "reproducibility": True,
}


def main(work: str, epochs: int) -> None:
    numpy2_shim()                                 # RecBole 1.2.0's Config() reads np.float_ (gone in numpy 2)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.autograd.set_detect_anomaly(False)      # importing RecBole's models (sine.py) turned it on: 3x slower
    os.chdir(work)
    out = os.path.join(work, "out")
    os.makedirs(out, exist_ok=True)
    sys.argv = sys.argv[:1]                       # Config() would read every --key=value in argv
    config = Config(model="SASRec", dataset="saerec", config_dict={
        **CONFIG, "data_path": work, "checkpoint_dir": os.path.join(work, "saved"), "epochs": epochs})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = SASRec(config, train_data.dataset)
    trainer = Trainer(config, model)
    best = {}                                     # the best epoch's weights, as RecBole saves them
    save_checkpoint = trainer._save_checkpoint

    def keep_best(*args, **kwargs):
        best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return save_checkpoint(*args, **kwargs)

    trainer._save_checkpoint = keep_best
    t0 = time.time()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    print(f"recbole: trained {epochs} epochs in {time.time() - t0:.1f}s", flush=True)
    os.replace(trainer.saved_model_file, os.path.join(out, "recbole.pth"))

    # The item list: what RecBole's item ids 1.. stand for (its tokens are saerec's item ids).
    with open(os.path.join(out, "items.json"), "w") as f:
        json.dump(train_data.dataset.field2id_token["item_id"][1:].tolist(), f)

    # RecBole's own scores with the weights it saved in recbole.pth (kept in memory when it saved them,
    # so nothing here unpickles the file; saerec's converter reads it with a restricted unpickler).
    model.load_state_dict(best["state"])
    model.eval()
    with open(os.path.join(work, "histories.json")) as f:
        histories = json.load(f)
    L = config["MAX_ITEM_LIST_LENGTH"]
    seq = torch.zeros(len(histories), L, dtype=torch.long)
    for r, h in enumerate(histories):
        seq[r, :len(h)] = torch.as_tensor(dataset.token2id("item_id", [str(i) for i in h]))
    lens = torch.tensor([len(h) for h in histories])
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lens}))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"scores": scores[:, 1:].tolist()}, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2)
