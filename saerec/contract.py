"""What a pipeline stage promises: its name, the config sections it reads, the run files it reads
and writes, and the function that does the work.

Each stage module (``saerec/<package>/stage.py``) declares its own ``STAGE``; ``saerec/pipeline.py``
only orders them and decides, from the declared sections and inputs, whether a stage must rerun.
Inputs and outputs are run-relative paths named in ``saerec.rundir.A``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .config import RunConfig
from .rundir import RunDir


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]                       # config sections the stage reads
    inputs: tuple[str, ...]                         # run-relative files or folders, content-hashed
    outputs: tuple[str, ...]                        # all must exist for the stage to count as done
    run: Callable[[RunDir, RunConfig], dict | None]  # does the work and returns its summary (or None)
