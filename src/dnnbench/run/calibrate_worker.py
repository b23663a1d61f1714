"""The isolated worker of `dnnbench calibrate`: reads one job (JSON on stdin: device, precision, threads, deadline,
group size, items), times the items until the deadline, and writes one JSON line per item timed:
{"index", "seconds"} or {"index", "seconds": null, "error"} for an operator that cannot be replayed.

Operators are timed in groups, each run in turn with the others of its group in between
(`measure.operators.time_operators_interleaved`), the way operators follow one another in a model. A group
holds operators of similar guessed cost (the job's `guess`), so that a one-second convolution does not leave a
microsecond activation with three samples. The module-call probes are timed alone.

With backend "openvino" each operator is a one-operator OpenVINO model (`measure.openvino_operators`), timed
the same way; the infer-call probe is timed first (its time is taken off each operator's). Converting and
compiling a group is not timing: the worker writes {"setup_s"} after each group, and its deadline moves on by
as much (the calibrating process's deadline too)."""

from __future__ import annotations

import json
import sys
import time

from ..measure.openvino_operators import INFER_CALL
from ..measure.operators import MODULE_CALL

PROBES = (MODULE_CALL, INFER_CALL)


def _groups(items: list[dict], size: int) -> list[list[int]]:
    """Indices of the operator items in groups of `size`, by guessed cost; each probe a group of its own."""
    probes = [[i] for i, item in enumerate(items) if item["op"] in PROBES]
    operators = sorted((i for i, item in enumerate(items) if item["op"] not in PROBES),
                       key=lambda i: items[i].get("guess", 0.0))
    return probes + [operators[k:k + size] for k in range(0, len(operators), size)]


def _row(index: int, timing) -> dict:
    if isinstance(timing, Exception):
        message = (str(timing).splitlines() or [""])[0]
        return {"index": index, "seconds": None, "error": f"{type(timing).__name__}: {message}"}
    return {"index": index, "seconds": timing.seconds}


def main() -> int:
    job = json.loads(sys.stdin.read())
    import torch

    from ..devices import torch_dtype
    from ..measure.operators import time_module_calls, time_operators_interleaved

    if job["device"] == "cpu":
        torch.set_num_threads(int(job["threads"]))
    # Repeated in-place products (x *= sigmoid(.)) drive values towards denormals, which real models never sit on.
    torch.set_flush_denormal(True)
    dtype = torch_dtype(job["precision"])
    items = job["items"]
    deadline = job["deadline"]
    openvino = job.get("backend", "eager") == "openvino"
    infer_call_s = 0.0
    if openvino:  # the worker's start, loading OpenVINO's plug-in and the probe are set-up too (seconds when busy)
        from ..measure.openvino_operators import time_infer_call, time_operators_openvino

        infer_call_s = time_infer_call(job["precision"], int(job["threads"])).seconds
        setup_s = max(time.time() - job.get("sent_at", time.time()), 0.0)
        deadline += setup_s
        print(json.dumps({"setup_s": setup_s}), flush=True)
    for group in _groups(items, int(job.get("group_size", 1))):
        if time.time() >= deadline:
            break
        if len(group) == 1 and items[group[0]]["op"] in PROBES:
            index = group[0]
            if items[index]["op"] == INFER_CALL:
                seconds = infer_call_s
            else:
                seconds = time_module_calls(int(items[index]["args"]["modules"]), job["device"]).seconds
            print(json.dumps({"index": index, "seconds": seconds}), flush=True)
            continue
        ops = [(items[i]["op"], items[i]["args"]) for i in group]
        if openvino:
            timed = time_operators_openvino(ops, job["precision"], int(job["threads"]), infer_call_s)
            timings = timed.timings
            deadline += timed.setup_s
            print(json.dumps({"setup_s": timed.setup_s}), flush=True)
        else:
            timings = time_operators_interleaved(ops, job["device"], dtype)
        for index, timing in zip(group, timings):
            print(json.dumps(_row(index, timing)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
