"""The isolated worker of `dnnbench calibrate`: reads one job (JSON on stdin: device, precision, threads, deadline,
items), times each item with `measure.operators` until the deadline, and writes one JSON line per item timed:
{"index", "seconds"} or {"index", "seconds": null, "error"} for an operator that cannot be replayed."""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    job = json.loads(sys.stdin.read())
    import torch

    from ..devices import torch_dtype
    from ..measure.operators import MODULE_CALL, time_module_calls, time_operator

    if job["device"] == "cpu":
        torch.set_num_threads(int(job["threads"]))
    # Repeated in-place products (x *= sigmoid(.)) drive values towards denormals, which real models never sit on.
    torch.set_flush_denormal(True)
    dtype = torch_dtype(job["precision"])
    for index, item in enumerate(job["items"]):
        if time.time() >= job["deadline"]:
            break
        try:
            if item["op"] == MODULE_CALL:
                seconds = time_module_calls(int(item["args"]["modules"]), job["device"]).seconds
            else:
                seconds = time_operator(item["op"], item["args"], job["device"], dtype).seconds
            row = {"index": index, "seconds": seconds}
        except Exception as exc:  # noqa: BLE001 - one operator that cannot be replayed must not end the calibration
            message = (str(exc).splitlines() or [""])[0]
            row = {"index": index, "seconds": None, "error": f"{type(exc).__name__}: {message}"}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
