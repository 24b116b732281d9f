"""``saerec recommend``: offline batch recommendations over a Ray Data actor pool on the shared
interpreted synthetic run. The offline lists equal the service's own (library) answers for the same
histories, the business rules hold in the output, an interrupted job resumes from its finished parts
(and gives the same lists), and bad input exits 2 with one line and nothing at OUT."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import error_lines

from saerec.cli import main
from saerec.serving.client import RecommenderClient
from saerec.serving.offline import OfflineActor, OfflineJob, long_rows, recommend_offline, request_of


@pytest.fixture(scope="module")
def service(interpreted_run):
    from saerec.serving.service import RecommenderService

    return RecommenderService(interpreted_run[0])


def users_of(run, part: str | None):
    t = pq.read_table(run.path("data/sequences.parquet"), columns=["user_id", "items"],
                      filters=[("part", "=", part)] if part else None)
    return t.column("user_id").to_pylist(), t.column("items").to_pylist()


def test_offline_equals_the_service_and_the_rules_hold(interpreted_run, service, tmp_path, capsys):
    run, _ = interpreted_run
    users, histories = users_of(run, "test")
    deny = [int(i) for i in service.popular[:3]]              # dense indices of the 3 most popular items...
    deny = [service._ids[i] for i in deny]                    # ...as dataset ids
    out = tmp_path / "recs.parquet"
    rc = main(["recommend", "--run", str(run.root), "--users", "test", "--out", str(out), "--k", "8",
               "--edit", "Sci-Fi=add:3", "--exclude-attribute", "Western", "--deny", ",".join(map(str, deny)),
               "--part-users", "20"])
    assert rc == 0, capsys.readouterr().err
    assert "recommend:" in capsys.readouterr().out                          # the progress line (rate, ETA)
    got = pq.read_table(out).to_pandas()
    assert list(got.columns) == ["user_id", "rank", "item_id", "score"]
    assert sorted(set(got["user_id"])) == sorted(users) and not out.with_name(out.name + ".parts").exists()
    western = set(service.items.items.loc[service.items.items["Western"], "item_id"].astype(int))
    for u, h in zip(users, histories):
        mine = got[got["user_id"] == u]
        want = service.recommend(RecommenderClient.request(h, k=8, steering=["Sci-Fi=add:3"], deny_items=deny,
                                                           exclude_attributes=["Western"])).items
        assert mine["item_id"].tolist() == [it.item_id for it in want], u
        assert mine["rank"].tolist() == list(range(1, len(want) + 1))
        np.testing.assert_allclose(mine["score"], [it.score for it in want], rtol=1e-5, atol=1e-6)
        ids = set(mine["item_id"])
        assert not ids & western and not ids & set(deny) and not ids & set(h), u   # rules and exclude_seen hold
    assert len(got) == 8 * len(users)


def test_an_interrupted_job_resumes_from_its_finished_parts(interpreted_run, tmp_path):
    run, _ = interpreted_run
    out = tmp_path / "all.parquet"
    job = OfflineJob(run=str(run.root), out=str(out), users="all", edits=["Action=add:2"],
                     rules={"exclude_attributes": ["Children"]}, part_users=150, batch_users=64)
    first = out.with_name(out.name + ".parts") / "part-00000.parquet"

    class Stop(Exception):
        pass

    def stop(i):
        raise Stop(i)

    with pytest.raises(Stop):
        recommend_offline(job, on_part=stop)
    assert not out.exists()                                   # nothing half-written at OUT
    stamp = first.stat().st_mtime_ns, first.stat().st_ino
    seen = []
    s = recommend_offline(job, on_part=lambda i: seen.append((i, first.stat().st_mtime_ns, first.stat().st_ino)))
    users, histories = users_of(run, None)
    assert s["parts_reused"] == 1 and s["users_scored"] == len(users) - 150, s
    assert [i for i, *_ in seen] == [1, 2, 3] and all(tuple(x[1:]) == stamp for x in seen)   # part 0 not redone
    # the same file as one uninterrupted pass: the actor's own code over every user, in order, without Ray
    actor = OfflineActor(str(run.root), request_of(job).SerializeToString())
    want = long_rows(actor({"user_id": np.array(users), "items": histories}))
    got = pq.read_table(out)
    assert got.schema == want.schema and got.drop(["score"]).equals(want.drop(["score"]))
    # scores: float32 sums whose order depends on how users were batched (length-cut, padded passes)
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("args, needle", [
    (["--include-attribute", "Polka"], "include_attributes[0]: unknown attribute 'Polka'"),
    (["--edit", "Polka=add:3"], "steering[0].attribute"),
    (["--k", "1001"], "k: must be in 1..1000"),
    (["--users", "missing.parquet"], "missing.parquet: no such file"),
    (["--users", "BADCOLS"], "needs columns user_id (integer) and items"),
    (["--users", "DUPS"], "user_id has duplicates"),
])
def test_bad_input_exits_2_with_one_line_and_nothing_written(interpreted_run, tmp_path, capsys, args, needle):
    run, _ = interpreted_run
    if "BADCOLS" in args:
        pq.write_table(pa.table({"user_id": [1], "history": [[1, 2]]}), tmp_path / "bad.parquet")
    if "DUPS" in args:
        pq.write_table(pa.table({"user_id": [1, 1], "items": [[1], [2]]}), tmp_path / "bad.parquet")
    args = [str(tmp_path / "bad.parquet") if a in ("BADCOLS", "DUPS") else
            str(tmp_path / a) if a == "missing.parquet" else a for a in args]
    out = tmp_path / "out.parquet"
    assert main(["recommend", "--run", str(run.root), "--out", str(out)] + args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(error_lines(err)) == 1, err
    assert sorted(os.listdir(tmp_path)) == (["bad.parquet"] if "bad.parquet" in str(args) else [])
