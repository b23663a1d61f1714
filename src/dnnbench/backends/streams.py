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


class AsyncInferQueuePool(StreamPool):
    """OpenVINO's own way: an `AsyncInferQueue` of `streams` infer requests on a model compiled with NUM_STREAMS =
    streams, every request bound to the same input. `start_async` takes the next idle request (waiting, GIL
    released, while all are busy); OpenVINO calls back from its own threads when a request is done."""

    concurrency = "openvino-async-infer-queue"

    def __init__(self, compiled_model: Any, array: Any, streams: int, threads_per_stream: int | None):
        import openvino as ov

        super().__init__(streams, threads_per_stream)
        self.compiled_model = compiled_model
        self.queue = ov.AsyncInferQueue(compiled_model, streams)
        self._array = array  # the requests' input tensors share this memory
        for index in range(len(self.queue)):
            self.queue[index].set_input_tensor(ov.Tensor(array, shared_memory=True))
        self.queue.set_callback(self._finished)

    @staticmethod
    def _finished(request: Any, on_done: OnDone) -> None:
        on_done(None)

    def submit(self, on_done: OnDone) -> None:
        self.queue.start_async(userdata=on_done)

    def wait_all(self) -> None:
        self.queue.wait_all()

    def close(self) -> None:
        self.queue.wait_all()
        self.queue = self.compiled_model = self._array = None


class CallerThreadPool(StreamPool):
    """One stream on the caller's own thread: `submit` runs the request and calls `on_done` before returning (a
    request arriving meanwhile waits in `submit`, as it would for a busy stream). PyTorch on a CPU with one
    stream uses it: each thread that runs ATen's parallel regions gets an OpenMP team of its own, and a second
    team beside the worker's main-thread one slowed MobileNetV2 at batch 1 on 2 cores from 16.7 to 29-35 ms per
    call, in the main thread as in the new one (measured here, idle): single-stream figures must come from the
    thread that times `run`'s cells."""

    def __init__(self, call: Callable[[], Any], threads_per_stream: int | None,
                 context: Callable[[], ContextManager[Any]], concurrency: str):
        super().__init__(1, threads_per_stream)
        self.concurrency = concurrency
        self._call, self._context = call, context

    def submit(self, on_done: OnDone) -> None:
        error: BaseException | None = None
        try:
            with self._context():
                self._call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
            error = exc
        on_done(error)

    def wait_all(self) -> None:
        return None


def torch_thread_pool(forward: Callable[[], Any], streams: int, threads_per_stream: int | None,
                      device: Any) -> StreamPool:
    """PyTorch from `streams` Python threads, all calling `forward` (one model, shared read-only), under
    inference mode. CPU: every stream thread sets the intra-op thread count to `threads_per_stream` (ATen's
    setting is one for the process, so all streams set the same value; the caller's count is restored when the
    pool closes). CUDA: each thread queues on its own `torch.cuda.Stream` (made after the input was written on the
    current stream, which it waits for), and a request is done when its stream has finished on the GPU."""
    import torch

    previous = torch.get_num_threads()
    cuda = getattr(device, "type", str(device)) == "cuda"
    origin = torch.cuda.current_stream(device) if cuda else None
    if not cuda and streams == 1:
        @contextlib.contextmanager
        def own_threads():
            if threads_per_stream:
                torch.set_num_threads(threads_per_stream)
            try:
                with torch.inference_mode():
                    yield
            finally:
                torch.set_num_threads(previous)
        return CallerThreadPool(forward, threads_per_stream, own_threads, "torch-threads")

    @contextlib.contextmanager
    def context(index: int):
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            if cuda:
                stream = torch.cuda.Stream(device)
                stream.wait_stream(origin)
                stack.enter_context(torch.cuda.stream(stream))
            elif threads_per_stream:
                torch.set_num_threads(threads_per_stream)
            yield

    def make_call(index: int) -> Callable[[], Any]:
        if not cuda:
            return forward
        stream = torch.cuda.current_stream(device)

        def call() -> Any:
            output = forward()
            stream.synchronize()  # done on the GPU, not merely queued
            return output
        return call

    class TorchPool(ThreadStreamPool):
        def close(self) -> None:
            super().close()
            if not cuda:
                torch.set_num_threads(previous)

    return TorchPool(streams, threads_per_stream, make_call, context,
                     concurrency="torch-cuda-streams" if cuda else "torch-threads")


__all__ = ["AsyncInferQueuePool", "CallerThreadPool", "ConcurrencyUnsupported", "OnDone", "StreamPool", "ThreadStreamPool",
           "torch_thread_pool"]
