"""Networks that behave (and misbehave) on purpose, for sweeps run by the tests as python:MODULE:NAME.

The module is imported by the spawned workers, which inherit the tests folder on sys.path.
"""

import ctypes
import os
import signal
import time

import torch
from torch import nn


class Tiny(nn.Module):
    """Conv 3->8, 3x3, stride 4; global pool; linear 8->10: on 32x32 inputs 8*8*8*27 + 80 MACs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1), 1))


class _Misbehaving(Tiny):
    """Misbehaves on real tensors only: the complexity count on the meta device stays fine."""

    def forward(self, x):
        if x.device.type != "meta":
            self.act(x.shape[0])
        return super().forward(x)


class Raising(_Misbehaving):
    def act(self, batch):
        raise ValueError("this model always fails")


class Segfaulting(_Misbehaving):
    def act(self, batch):
        if batch >= 2:
            ctypes.string_at(0)  # a null-pointer read: SIGSEGV


class Aborting(_Misbehaving):
    def act(self, batch):
        os.abort()


class Sleeping(_Misbehaving):
    def act(self, batch):
        time.sleep(3600)


class Hungry(_Misbehaving):
    """Needs 256 MB x batch: at batch 1 fine, past an 800 MB cap (batch 4) out of memory."""

    def act(self, batch):
        block = torch.ones(batch * 64 * 2**20)  # float32: 256 MB per image
        del block


def tiny():
    return Tiny()


def raising():
    return Raising()


def segfaulting():
    return Segfaulting()


def aborting():
    return Aborting()


def sleeping():
    return Sleeping()


def hungry():
    return Hungry()


class Unexportable(Tiny):
    """Runs everywhere in PyTorch, but the ONNX exporter has no symbolic for aten::fft_rfft2."""

    def forward(self, x):
        if x.device.type == "meta":
            return super().forward(x)
        return super().forward(x) + torch.fft.rfft2(x).abs().mean((1, 2, 3)).unsqueeze(1)


def unexportable():
    return Unexportable()


class KilledOnRerun(_Misbehaving):
    """Fine on a first sweep; with DNNBENCH_TEST_SIGKILL set (a re-run), its worker kills itself with SIGKILL at
    batch size 2 and up: a real kill of the worker process, mid-job."""

    def act(self, batch):
        if batch >= 2 and os.environ.get("DNNBENCH_TEST_SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)


def killed_on_rerun():
    return KilledOnRerun()


_SHAPES_SEEN = set()  # per worker process: every instance, the rebuilt eager reference included


class SlowFirstCall(Tiny):
    """Sleeps 0.3 s at the first forward of each batch size in a process, and appends every forward's batch
    size to the file DNNBENCH_TEST_CALL_LOG: the sleep lands in whatever call ran first at that shape."""

    def forward(self, x):
        if x.device.type != "meta":
            batch = int(x.shape[0])
            if batch not in _SHAPES_SEEN:
                _SHAPES_SEEN.add(batch)
                time.sleep(0.3)
            with open(os.environ["DNNBENCH_TEST_CALL_LOG"], "a") as log:
                log.write(f"{batch}\n")
        return super().forward(x)


class WrongCompiledAtBatch8(Tiny):
    """Right in eager PyTorch; inside torch.compile the graph built for batch size 8 adds 1 to every logit,
    as a miscompiled artefact for one shape would."""

    def forward(self, x):
        out = super().forward(x)
        if torch.compiler.is_compiling() and x.shape[0] == 8:
            out = out + 1.0
        return out


def slow_first_call():
    return SlowFirstCall()


def wrong_compiled_at_batch8():
    return WrongCompiledAtBatch8()


class KilledInTrial(_Misbehaving):
    """Killed with SIGKILL in the worker process that runs it as the DNNBENCH_TEST_KILL_AT-th (a trial of a
    `--repeats` sweep): the worker processes register in DNNBENCH_TEST_TRIAL_DIR, one file each, in order."""

    registered = False

    def act(self, batch):
        folder = os.environ.get("DNNBENCH_TEST_TRIAL_DIR")
        if not folder or KilledInTrial.registered:
            return
        KilledInTrial.registered = True
        position = len(os.listdir(folder)) + 1
        open(os.path.join(folder, f"{position}-{os.getpid()}"), "w").close()
        if position == int(os.environ.get("DNNBENCH_TEST_KILL_AT", "2")):
            os.kill(os.getpid(), signal.SIGKILL)


def killed_in_trial():
    return KilledInTrial()
