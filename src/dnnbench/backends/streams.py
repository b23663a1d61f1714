"""Several requests in flight at once: the stream pools the offline and server scenarios drive.

A `StreamPool` runs one bound request (one forward pass at one batch size) on any of its `streams`, each
free stream taking the next request. `submit(on_done)` blocks until a stream is free, starts a request there
and returns; `on_done(error)` is called, from whichever thread completes it, once the work is really done
(on CUDA: after the stream's work finished on the GPU, not when it was queued). So a caller that submits on
a schedule measures queueing too: a request whose stream is busy waits in `submit`, in arrival order.

Each backend makes its streams the way its runtime supports best (`Backend.stream_pool`): OpenVINO's
AsyncInferQueue, one ONNX Runtime session called from several threads, PyTorch from several threads each
with its own intra-op thread count (and its own CUDA stream on a GPU). `ThreadStreamPool` is the threaded
form: one Python thread per stream, each running the backend's blocking call (which releases the GIL).
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Callable, ContextManager

OnDone = Callable[[BaseException | None], None]


class ConcurrencyUnsupported(Exception):
    """This backend cannot run several requests at once here (or doing so is not proven): its scenario cells
    are stored as unsupported, with this reason, never timed one stream at a time under another name."""


class StreamPool(ABC):
    """`streams` requests in flight at most; `concurrency` names how (a store.values.CONCURRENCY_KINDS key)."""

    concurrency: str = ""

    def __init__(self, streams: int, threads_per_stream: int | None):
        if streams < 1:
            raise ValueError(f"a stream pool needs at least one stream, not {streams}")
        self.streams, self.threads_per_stream = streams, threads_per_stream

    @abstractmethod
    def submit(self, on_done: OnDone) -> None:
        """Start one request on the next free stream (blocking while every stream is busy)."""

    @abstractmethod
    def wait_all(self) -> None:
        """Return once every submitted request has completed (and its `on_done` has returned)."""

    def close(self) -> None:
        """Stop the pool's threads and release its requests; the pool is unusable afterwards."""
        return None

    def __enter__(self) -> StreamPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadStreamPool(StreamPool):
    """One Python thread per stream. `make_call(index)` gives stream `index`'s blocking call (made in that
    thread, inside `context(index)`, which stays entered while the thread lives: inference mode, the thread's
    intra-op thread count, its CUDA stream). Requests go to whichever stream is free, in submission order."""

    concurrency = "threads"

    def __init__(self, streams: int, threads_per_stream: int | None, make_call: Callable[[int], Callable[[], Any]],
                 context: Callable[[int], ContextManager[Any]] | None = None, concurrency: str | None = None):
        super().__init__(streams, threads_per_stream)
        if concurrency:
            self.concurrency = concurrency
        self._make_call, self._context = make_call, context or (lambda index: contextlib.nullcontext())
        self._free = threading.Semaphore(streams)
        self._queue: deque[OnDone | None] = deque()
        self._ready = threading.Condition()
        self._idle = threading.Condition()
        self._pending = 0
        self._started = threading.Barrier(streams + 1)
        self._startup_error: BaseException | None = None
        self._threads = [threading.Thread(target=self._serve, args=(i,), name=f"dnnbench-stream-{i}", daemon=True)
                         for i in range(streams)]
        for thread in self._threads:
            thread.start()
        with contextlib.suppress(threading.BrokenBarrierError):
            self._started.wait()  # every stream's call is made (its thread count, its CUDA stream) before timing
        if self._startup_error is not None:
            self.close()
            raise self._startup_error

    def _serve(self, index: int) -> None:
        try:
            with self._context(index):
                call = self._make_call(index)
                self._started.wait()
                while True:
                    with self._ready:
                        while not self._queue:
                            self._ready.wait()
                        on_done = self._queue.popleft()
                    if on_done is None:
                        return
                    error: BaseException | None = None
                    try:
                        call()
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
                        error = exc
                    try:
                        on_done(error)
                    finally:
                        self._free.release()
                        with self._idle:
                            self._pending -= 1
                            self._idle.notify_all()
        except threading.BrokenBarrierError:
            return  # another stream failed to start: its error is the pool's
        except BaseException as exc:  # noqa: BLE001 - a stream that cannot start fails the pool's construction
            if self._startup_error is None:
                self._startup_error = exc
            with contextlib.suppress(threading.BrokenBarrierError):
                self._started.abort()

    def submit(self, on_done: OnDone) -> None:
        self._free.acquire()
        with self._idle:
            self._pending += 1
        with self._ready:
            self._queue.append(on_done)
            self._ready.notify()

    def wait_all(self) -> None:
        with self._idle:
            while self._pending:
                self._idle.wait()

    def close(self) -> None:
        with self._ready:
            self._queue.extend([None] * len(self._threads))
            self._ready.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()


__all__ = ["ConcurrencyUnsupported", "OnDone", "StreamPool", "ThreadStreamPool"]
