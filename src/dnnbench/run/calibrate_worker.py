"""The isolated worker of `dnnbench calibrate`: reads one job (JSON on stdin: device, precision, threads, deadline,
group size, items), times the items until the deadline, and writes one JSON line per item timed:
{"index", "seconds"} or {"index", "seconds": null, "error"} for an operator that cannot be replayed.

Operators are timed in groups, each run in turn with the others of its group in between
(`measure.operators.time_operators_interleaved`), the way operators follow one another in a model. A group
holds operators of similar guessed cost (the job's `guess`), so that a one-second convolution does not leave a
microsecond activation with three samples. The module-call probes are timed alone."""

from __future__ import annotations

import json
import sys
import time


def _groups(items: list[dict], size: int) -> list[list[int]]:
    """Indices of the operator items in groups of `size`, by guessed cost; each probe a group of its own."""
    from ..measure.operators import MODULE_CALL

    probes = [[i] for i, item in enumerate(items) if item["op"] == MODULE_CALL]
    operators = sorted((i for i, item in enumerate(items) if item["op"] != MODULE_CALL),
                       key=lambda i: items[i].get("guess", 0.0))
    return probes + [operators[k:k + size] for k in range(0, len(operators), size)]


def main() -> int:
    job = json.loads(sys.stdin.read())
    import torch

    from ..devices import torch_dtype
    from ..measure.operators import MODULE_CALL, time_module_calls, time_operators_interleaved

    if job["device"] == "cpu":
        torch.set_num_threads(int(job["threads"]))
    # Repeated in-place products (x *= sigmoid(.)) drive values towards denormals, which real models never sit on.
    torch.set_flush_denormal(True)
    dtype = torch_dtype(job["precision"])
    items = job["items"]
    for group in _groups(items, int(job.get("group_size", 1))):
        if time.time() >= job["deadline"]:
            break
        if len(group) == 1 and items[group[0]]["op"] == MODULE_CALL:
            index = group[0]
            seconds = time_module_calls(int(items[index]["args"]["modules"]), job["device"]).seconds
            print(json.dumps({"index": index, "seconds": seconds}), flush=True)
            continue
        timings = time_operators_interleaved([(items[i]["op"], items[i]["args"]) for i in group], job["device"],
                                             dtype)
        for index, timing in zip(group, timings):
            if isinstance(timing, Exception):
                message = (str(timing).splitlines() or [""])[0]
                row = {"index": index, "seconds": None, "error": f"{type(timing).__name__}: {message}"}
            else:
                row = {"index": index, "seconds": timing.seconds}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
