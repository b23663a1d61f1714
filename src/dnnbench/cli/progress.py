"""Rich progress bars for a sweep: the whole suite, and each model being measured, with ETA. On a cluster
several models run at once, each bar names its node, and the suite bar counts the cells of each node."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..run.plan import WorkerJob
from ..store import ResultRecord

STATUS_STYLE = {"ok": "green", "oom": "yellow", "skipped": "dim", "error": "red", "crash": "bold red",
                "timeout": "red", "unavailable": "dim", "lost": "red", "unsupported": "yellow"}


class RichProgress:
    def __init__(self, console: Console):
        self.console = console
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.suite_task = None
        self.suite_name = ""
        self.model_tasks: dict[tuple[int, str], object] = {}  # (id(job), where) -> its bar
        self.per_node: dict[str, int] = {}
        self.done = self.total = 0

    def start(self, total_cells: int, jobs: list[WorkerJob]) -> None:
        self.bars.start()
        self.total = total_cells
        self.suite_name = f"suite ({len(jobs)} jobs)"
        self.suite_task = self.bars.add_task(self.suite_name, total=total_cells)

    def job_started(self, job: WorkerJob, where: str = "") -> None:
        threads = f", {job.threads} threads" if job.threads else ""
        node = f" on {where}" if where else ""
        self.model_tasks[id(job), where] = self.bars.add_task(f"  {job.model}{threads}{node}", total=len(job.cells))

    def cell_done(self, record: ResultRecord, job: WorkerJob | None = None, where: str = "") -> None:
        self.done += 1
        self.bars.advance(self.suite_task)
        task = self.model_tasks.get((id(job), where))
        if task is not None:
            self.bars.advance(task)
        if where:  # cells per node, on the suite bar
            self.per_node[where] = self.per_node.get(where, 0) + 1
            nodes = ", ".join(f"{node} {n}" for node, n in sorted(self.per_node.items()))
            self.bars.update(self.suite_task, description=f"{self.suite_name} [{nodes}]")
        if record.status != "ok":
            style = STATUS_STYLE.get(record.status, "red")
            batch = record.config.get("batch_size")
            node = f" on {where}" if where else ""
            self.bars.console.print(f"[{style}]{record.status}[/] {record.model} {record.metric} batch {batch}{node}: "
                                    f"{(record.error or '').splitlines()[0][:160] if record.error else ''}",
                                    highlight=False)

    def job_done(self, job: WorkerJob, where: str = "") -> None:
        if not self.console.is_terminal:  # logs (CI, files) get one line per job instead of live bars
            node = f" on {where}" if where else ""
            self.console.print(f"done {job.model}{node} ({self.done}/{self.total} cells)", highlight=False)
        task = self.model_tasks.pop((id(job), where), None)
        if task is not None:
            self.bars.remove_task(task)

    def finish(self) -> None:
        self.bars.stop()


class ProfileProgress:
    """One bar for `dnnbench profile` over many models, with ETA; a failed model is printed above it.
    Off a terminal (logs) a line every `log_every` models instead of a live bar."""

    def __init__(self, console: Console, log_every: int = 100):
        self.console, self.log_every = console, log_every
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                             transient=True)
        self.task = None
        self.done = self.total = 0

    def start(self, total: int, reused: int) -> None:
        self.total = total
        if reused:
            self.console.print(f"{reused} models already counted in the store: skipped", style="dim")
        if total:
            self.bars.start()
            self.task = self.bars.add_task("counting", total=total)

    def record(self, record: ResultRecord) -> None:
        self.done += 1
        if self.task is not None:
            self.bars.update(self.task, advance=1, description=f"counting ({record.model})")
        if record.status != "ok":
            style = STATUS_STYLE.get(record.status, "red")
            self.bars.console.print(f"[{style}]{record.status}[/] {record.model}: {(record.error or '')[:200]}",
                                    highlight=False)
        elif not self.console.is_terminal and (self.done % self.log_every == 0 or self.done == self.total):
            self.console.print(f"counted {self.done}/{self.total}", highlight=False)

    def finish(self) -> None:
        self.bars.stop()
