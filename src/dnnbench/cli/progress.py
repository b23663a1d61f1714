"""Rich progress bars for a sweep: the whole suite, and the model being measured, both with ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..run.plan import WorkerJob
from ..store import ResultRecord

STATUS_STYLE = {"ok": "green", "oom": "yellow", "skipped": "dim", "error": "red", "crash": "bold red",
                "timeout": "red", "unavailable": "dim", "lost": "red"}


class RichProgress:
    def __init__(self, console: Console):
        self.console = console
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.suite_task = None
        self.model_task = None
        self.done = self.total = 0

    def start(self, total_cells: int, jobs: list[WorkerJob]) -> None:
        self.bars.start()
        self.total = total_cells
        self.suite_task = self.bars.add_task(f"suite ({len(jobs)} jobs)", total=total_cells)

    def job_started(self, job: WorkerJob) -> None:
        threads = f", {job.threads} threads" if job.threads else ""
        self.model_task = self.bars.add_task(f"  {job.model}{threads}", total=len(job.cells))

    def cell_done(self, record: ResultRecord) -> None:
        self.done += 1
        self.bars.advance(self.suite_task)
        if self.model_task is not None:
            self.bars.advance(self.model_task)
        if record.status != "ok":
            style = STATUS_STYLE.get(record.status, "red")
            batch = record.config.get("batch_size")
            self.bars.console.print(f"[{style}]{record.status}[/] {record.model} {record.metric} batch {batch}: "
                                    f"{(record.error or '').splitlines()[0][:160] if record.error else ''}",
                                    highlight=False)

    def job_done(self, job: WorkerJob) -> None:
        if not self.console.is_terminal:  # logs (CI, files) get one line per job instead of live bars
            self.console.print(f"done {job.model} ({self.done}/{self.total} cells)", highlight=False)
        if self.model_task is not None:
            self.bars.remove_task(self.model_task)
            self.model_task = None

    def finish(self) -> None:
        self.bars.stop()
