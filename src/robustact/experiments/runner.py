"""Run every cell of a spec: in this process, in local worker processes, or on Ray.

``run_spec(spec, "results.sqlite", workers=4)`` expands the grid, skips the cells the store
already holds as done, and runs the rest; each worker commits its cell in one transaction
when it finishes, so a killed run resumes where it stopped. A cell that raises is recorded
as failed (with its error) and the others carry on; re-running retries failed cells.

Backends:

``"local"`` (default)
    ``workers=1`` runs the cells one after another in this process; ``workers > 1`` starts
    that many processes with the ``spawn`` start method (fork is unsafe once torch has
    started threads). Every cell runs with ``threads`` torch threads (default 1), in this
    process and in workers alike: the thread count changes floating-point sums, so one
    policy keeps results independent of ``workers``; each cell records it.
``"ray"``
    One Ray task per cell (``num_cpus=1``, ``num_gpus=1`` with a CUDA device), at most
    ``workers`` in flight. Connects to a running cluster (``RAY_ADDRESS`` or an earlier
    ``ray.init``) or starts a local one. Workers open the store by path, so on a cluster the
    store and the output folder must be on a filesystem every node sees.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from robustact._validate import check_choice, check_float, check_int, writable_dir
from robustact.experiments.cell import CellResult, execute_cell
from robustact.experiments.spec import Cell, Spec, load_spec
from robustact.experiments.store import ResultStore

__all__ = ["BACKENDS", "RunSummary", "run_spec"]

BACKENDS = ("local", "ray")

#: Torch intra-op threads per cell unless ``threads=`` says otherwise: one, as each worker
#: process has always had, so a cell gives the same numbers with any ``workers``.
DEFAULT_THREADS = 1

RAY_HINT = 'backend "ray" needs Ray, which is not installed: pip install "robustact[ray]"'


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        spec: the spec's name; total: cells in the (resolved) grid.
        already_done: cells skipped because the store had them finished.
        results: one :class:`~robustact.experiments.cell.CellResult` per cell this run
            attempted ("done", "failed", or "skipped": finished by another run on the same
            store while this one waited for it).
        threads: torch threads each cell ran with (recorded in every cell's extra).
    """

    spec: str
    total: int
    already_done: int
    results: list[CellResult] = field(default_factory=list)
    threads: int = 1

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "failed"]

    def lines(self) -> list[str]:
        """A short human-readable account (one line per failed cell)."""
        out = [
            f"{self.spec}: {self.total} cells: {self.already_done} already done, "
            f"{self.done} done now, {len(self.failed)} failed, "
            f"{self.count('skipped')} done by another run"
        ]
        out += [f"  FAILED {r.label or r.cell_id}: {r.error}" for r in self.failed]
        return out


def _owner() -> str:
    # identifies this run's workers to the store's claim(); not a seed, so uuid is fine
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """This process's torch intra-op threads set to ``threads`` inside the block."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _progress(enabled: bool, total: int, name: str) -> Iterator[Callable[[CellResult], None]]:
    if not enabled or total == 0:
        yield lambda r: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cols = (TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"))  # fmt: skip
    with Progress(*cols) as bar:
        task = bar.add_task(name, total=total, last="")

        def update(r: CellResult) -> None:
            mark = {"done": "ok", "failed": "FAILED", "skipped": "by another run"}[r.status]
            bar.update(task, advance=1, last=f"{mark} {r.label}")

        yield update


def run_spec(
    spec: Spec | str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    workers: int = 1,
    backend: str = "local",
    quick: bool = False,
    progress: bool = True,
    output_dir: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    device: str | None = None,
    threads: int = DEFAULT_THREADS,
    poll: float = 2.0,
) -> RunSummary:
    """Run the cells of ``spec`` that ``store_path`` does not hold as done.

    Another run on the same store shares the work: a cell it holds (a live claim) is not
    computed here; this run waits for it and counts it as "done by another run", or
    computes it when the other run's claim goes stale (see
    :mod:`robustact.experiments.claims`).

    Args:
        spec: a :class:`Spec` or the path of a YAML spec.
        store_path: SQLite results file (created when missing).
        workers: cells at once (local processes or Ray tasks in flight), >= 1.
        backend: "local" or "ray" (see the module docstring).
        quick: apply the spec's ``quick:`` overrides.
        progress: show a progress bar over the cells.
        output_dir: checkpoint folder (default: the spec's ``output_dir``, else
            ``checkpoints/`` beside the store).
        data_root: dataset folder (default: the spec's ``data_root``, else the readers'
            default roots).
        device: "cpu" (default) or e.g. "cuda:0".
        threads: torch intra-op threads of every cell, in this process and in workers alike
            (default 1), so ``workers`` never changes a number; recorded as
            ``extra["threads"]`` of each cell.
        poll: seconds between two looks at cells another run is computing.
    Returns:
        :class:`RunSummary`.
    Raises:
        SpecError: the spec file is invalid (before any work).
        StoreError: the store file is unusable (a folder, not SQLite, unwritable).
        ValueError: a bad argument or an unwritable output folder (before any work).
        ImportError: backend "ray" without Ray installed.
    """
    check_int("workers", workers, 1)
    check_int("threads", threads, 1)
    check_float("poll", poll, 0.0, min_open=True)
    check_choice("backend", backend, BACKENDS)
    ray = _import_ray() if backend == "ray" else None
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    cells = spec.cells(quick=quick)
    store_path = Path(store_path)
    out = output_dir or spec.output_dir or store_path.parent / "checkpoints"
    writable_dir(out, "output_dir")
    with ResultStore(store_path) as store:
        done = store.done_ids()
    todo = [c for c in cells if c.cell_id not in done]
    summary = RunSummary(spec.name, len(cells), len(cells) - len(todo), threads=threads)
    root = data_root if data_root is not None else spec.data_root
    kwargs: dict[str, Any] = {
        "owner": _owner(), "spec_name": spec.name, "output_dir": os.fspath(out),
        "data_root": None if root is None else os.fspath(root), "device": device,
    }  # fmt: skip
    with _progress(progress, len(todo), spec.name) as update:

        def record(r: CellResult) -> None:
            summary.results.append(r)
            update(r)

        job = _Job(store_path, kwargs, workers, threads)
        while todo:
            held = _run_batch(todo, job, ray, record)
            todo = _await_others(held, store_path, record, poll)
    return summary


@dataclass(frozen=True)
class _Job:
    """What every cell of one run shares: the store, ``execute_cell``'s keyword arguments,
    the number of worker processes and the torch threads of each."""

    store_path: Path
    kwargs: dict[str, Any]
    workers: int
    threads: int

    def execute(self, c: Cell) -> CellResult:
        return execute_cell(c.config, self.store_path, label=c.label, **self.kwargs)

    def lost(self, c: Cell, why: str) -> CellResult:
        """Record a cell whose worker vanished (killed, out of memory) as failed."""
        with ResultStore(self.store_path) as store:
            store.fail_cell(c.config, why, spec=self.kwargs["spec_name"])
        return CellResult(c.cell_id, "failed", why, label=c.label)


def _run_batch(
    todo: Sequence[Cell], job: _Job, ray: Any, record: Callable[[CellResult], None]
) -> list[Cell]:
    """Runs ``todo``; returns the cells it did not compute (done meanwhile, or claimed by
    a live other run) for :func:`_await_others`."""
    held: list[Cell] = []
    by_id = {c.cell_id: c for c in todo}

    def collect(r: CellResult) -> None:
        if r.status == "skipped":
            held.append(by_id[r.cell_id])
        else:
            record(r)

    if ray is not None:
        _run_ray(ray, todo, job, collect)
    elif job.workers == 1:
        with _torch_threads(job.threads):
            for c in todo:
                collect(job.execute(c))
    else:
        _run_pool(todo, job, collect)
    return held


def _await_others(
    held: Sequence[Cell], store_path: Path, record: Callable[[CellResult], None], poll: float
) -> list[Cell]:
    """Wait for cells other runs hold; returns those whose claim went stale (to compute)."""
    waiting, stale = list(held), []
    while waiting:
        still = []
        with ResultStore(store_path) as store:
            for c in waiting:
                state, error = store.claim_state(c.cell_id)
                if state == "done":
                    record(CellResult(c.cell_id, "skipped", label=c.label))
                elif state == "failed":
                    record(
                        CellResult(c.cell_id, "failed", f"in another run: {error}", label=c.label)
                    )
                elif state == "live":
                    still.append(c)
                else:  # stale or absent: its owner is gone, compute it here
                    stale.append(c)
        waiting = still
        if waiting:
            time.sleep(poll)
    return stale


def _run_pool(todo: Sequence[Cell], job: _Job, record: Callable[[CellResult], None]) -> None:
    if not todo:
        return
    ctx = get_context("spawn")
    n = min(job.workers, len(todo))
    with ProcessPoolExecutor(
        n, mp_context=ctx, initializer=_init_worker, initargs=(job.threads,)
    ) as pool:
        futures: dict[Future[CellResult], Cell] = {pool.submit(job.execute, c): c for c in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                c = futures[f]
                try:
                    record(f.result())
                except BrokenProcessPool as e:
                    record(job.lost(c, f"worker process died ({e})"))


# --------------------------------------------------------------------------- Ray


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_HINT) from None
    return ray


def _run_ray(
    ray: Any, todo: Sequence[Cell], job: _Job, record: Callable[[CellResult], None]
) -> None:
    if not todo:
        return
    started = False
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
        started = True
    try:
        store, kwargs, threads = os.fspath(job.store_path), job.kwargs, job.threads
        gpus = 1 if str(kwargs.get("device") or "").startswith("cuda") else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_ray_cell)
        queue = list(todo)
        flight: dict[Any, Cell] = {}
        while queue or flight:
            while queue and len(flight) < job.workers:
                c = queue.pop(0)
                flight[task.remote(c.config, store, c.label, kwargs, threads)] = c
            ready, _ = ray.wait(list(flight), num_returns=1)
            for ref in ready:
                c = flight.pop(ref)
                try:
                    record(ray.get(ref))
                except ray.exceptions.RayError as e:
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    record(job.lost(c, f"Ray task failed: {msg}"))
    finally:
        if started:
            ray.shutdown()


def _ray_cell(
    config: dict[str, Any], store_path: str, label: str, kw: dict[str, Any], threads: int
) -> Any:
    import torch

    torch.set_num_threads(threads)  # the same policy as local cells
    if str(kw.get("device") or "").startswith("cuda"):
        kw = {**kw, "device": "cuda"}  # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU
    return execute_cell(config, store_path, label=label, **kw)
