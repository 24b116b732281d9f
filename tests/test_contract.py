"""The stage contract: every stage module declares its own ``STAGE``; the declarations chain (each
stage reads only what the data source or an earlier stage writes) and docs/stages.md shows them."""

from __future__ import annotations

import re
from pathlib import Path

from saerec.layout import A
from saerec.pipeline import pipeline_stages, stage_folders

DOCS = Path(__file__).resolve().parents[1] / "docs" / "stages.md"


def test_stages_come_from_their_modules_in_order():
    from saerec.activations import stage as extract
    from saerec.data import stage as data
    from saerec.interpret import stage as interpret
    from saerec.sae import stage as sae
    from saerec.saeeval import stage as saeeval
    from saerec.steer import stage as steer
    from saerec.train import stage as train

    stages = pipeline_stages()
    assert stages == [data.STAGE, train.STAGE, extract.STAGE, sae.STAGE, interpret.STAGE, steer.STAGE, saeeval.STAGE]
    resumed = pipeline_stages(resume=True)[1]
    assert resumed.name == "train" and resumed.run is not train.STAGE.run
    assert (resumed.sections, resumed.inputs, resumed.outputs) == (train.STAGE.sections, train.STAGE.inputs,
                                                                   train.STAGE.outputs)


def declared() -> list:
    """The stages of ``saerec run`` in order, then the tune stage (run on a finished run by ``saerec tune``)."""
    from saerec.tuning import stage as tune

    return [*pipeline_stages(), tune.STAGE]


def test_every_input_is_written_by_an_earlier_stage():
    written: set[str] = set()
    for stage in declared():
        for rel in stage.inputs:
            assert rel.split("/")[0] in written, f"{stage.name} reads {rel}, which no earlier stage writes"
        written |= set(stage_folders(stage))
    names = {v for k, v in vars(A).items() if k.isupper()}
    for stage in declared():
        assert set(stage.inputs) | set(stage.outputs) <= names, f"{stage.name}: a path not named in saerec.layout.A"


def _cells(cell: str) -> tuple[str, ...]:
    return tuple(re.findall(r"`([^`]+)`", cell))


def test_docs_table_matches_the_declarations():
    rows = {}
    for line in DOCS.read_text().splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) == 5 and cols[0] not in ("stage", "---") and not cols[0].startswith("-"):
            rows[cols[0]] = cols
    stages = declared()
    assert list(rows) == [s.name for s in stages]
    data_outputs = set(stages[0].outputs)
    for s in stages:
        _, _, sections, inputs, outputs = rows[s.name]
        assert tuple(x.strip() for x in sections.split(",")) == (s.sections or ("(none)",)), s.name
        if s.name == "data":
            assert inputs == "the dataset's files" and not s.inputs
        elif set(s.inputs) == data_outputs:
            assert inputs == "the data stage's outputs", s.name
        else:
            assert {c.rstrip("/") for c in _cells(inputs)} == set(s.inputs), s.name
        assert set(_cells(outputs)) == set(s.outputs), s.name


ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_architecture_table_names_every_module():
    """docs/architecture.md's package table names every module of the package it describes (a new
    module, or one moved, shows up here before a reader meets a stale map)."""
    root = Path(__file__).resolve().parents[1] / "saerec"
    rows = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) == 2:
            for path in re.findall(r"`(saerec/[\w/.]+)`", cols[0]):
                rows[path] = cols[1]
    missing = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root.parent).as_posix()
        if f.name in ("__init__.py", "__main__.py") or rel.startswith("saerec/v1/") or "__pycache__" in rel:
            continue
        package = f.parent.relative_to(root.parent).as_posix() + "/"
        if package == "saerec/":
            ok = rel in rows
        else:
            ok = f"`{f.name}`" in rows.get(package, "")
        if not ok:
            missing.append(rel)
    assert not missing, f"docs/architecture.md does not name: {', '.join(missing)}"
