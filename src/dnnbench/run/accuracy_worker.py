"""The isolated worker of an accuracy cell: one process per model, like a timing job (run.worker).

It loads the model and its weights, evaluates it (measure.accuracy), tells the runner how many images
are done as it goes (each report renews the cell's deadline), appends the model's rows to the predictions
file when asked, and sends one result. A model that crashes the process (a segfault in a kernel) is
recorded by the executor as `crash`; the runner goes on with the next model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from multiprocessing.connection import Connection

from ..data.imagenet import ImageNetSplit
from ..measure.accuracy import AccuracyResult, EvalSettings, PredictionsWriter, evaluate
from ..store.values import AccuracyValue
from .plan import Cell
from .worker import Begin, Done, Finished, Progressed, leave_signals_to_the_runner, record

DEFAULT_TIMEOUT_S = 600.0  # without a word from the worker (a batch done) for this long, it is stopped


@dataclass(frozen=True)
class AccuracyLimits:
    """What the executor allows an accuracy worker: `timeout_s` between two signs of life (loading the
    weights, one batch), not for the whole evaluation, which takes as long as the data set needs."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    cell_timeout_s: float | None = None


@dataclass(frozen=True)
class AccuracyJob:
    """One model's accuracy on one data set: a single cell (metric "accuracy")."""

    model: str
    cells: tuple[Cell, ...]
    split: ImageNetSplit  # the whole data set; settings.limit picks the images
    settings: EvalSettings
    weights: str | None = None  # a checkpoint instead of the library's weights
    predictions: str | None = None  # the CSV the model's predictions are appended to
    config: AccuracyLimits = AccuracyLimits()
    threads: int | None = None  # decoding and the model use what the settings and PyTorch choose

    @cached_property
    def images(self) -> int:
        return len(self.split.subset(self.settings.limit))

    def run_in_worker(self, conn: Connection) -> None:
        """What the worker program (run.worker) does with this job."""
        accuracy_main(conn, self)


class _PipeProgress:
    """measure.accuracy's progress, sent to the runner."""

    def __init__(self, conn: Connection, digest: str, total: int):
        self.conn, self.digest, self.total = conn, digest, total

    def model_started(self, model: str, images: int) -> None: ...

    def batch_done(self, images: int, evaluated: int, top1_correct: int) -> None:
        self.conn.send(Progressed(self.digest, images, self.total,
                                  (("evaluated", evaluated), ("top1_correct", top1_correct))))

    def model_done(self, result: AccuracyResult) -> None: ...


def accuracy_main(conn: Connection, job: AccuracyJob) -> None:
    leave_signals_to_the_runner()
    from ..zoo import get

    (cell,) = job.cells
    conn.send(Begin((cell.digest,), "evaluation", setup=True))  # loading the weights, then the images
    started = time.time()
    writer = PredictionsWriter(job.predictions, append=True) if job.predictions else None
    try:
        result = evaluate(get(job.model), job.split, job.settings, job.weights, writer,
                          _PipeProgress(conn, cell.digest, job.images), cell.key.config_dict)
    finally:
        if writer is not None:
            writer.close()
    value = AccuracyValue.from_dict(result.values())  # the store's type: a failed one keeps preprocessing, weights
    conn.send(Finished(record(cell, result.status, value, result.error, started_at=started)))
    conn.send(Done())
    conn.close()
