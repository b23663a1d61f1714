"""What every number of the report means: a summary of docs/METHODOLOGY.md, for the report's last section.

Static HTML written here (no user text), so it needs no escaping.
"""

from __future__ import annotations

METHODOLOGY_HTML = """
<dl class="method">
<dt>Parameters</dt>
<dd>Every parameter tensor of the inference model, counted once (shared tensors deduplicated), trainable or
not. Auxiliary training heads (GoogLeNet, Inception-v3) are removed. Buffers such as batch-norm running
statistics are not parameters.</dd>

<dt>Operations: MACs, not FLOPs</dt>
<dd><b>MACs</b> are multiply-accumulates of convolutions, linear layers and matrix products (attention
included), counted per image at the model's native input size by PyTorch's dispatch-level
<code>FlopCounterMode</code> on the meta device (no weights allocated). <b>FLOPs = 2 x MACs</b>. Bias additions,
normalisation, activations and pooling are not counted. The 2018 study's "G-FLOPs" axis used its
companion code's count (<code>dnnbench profile --mode bianco2018</code>): convolutions only, groups ignored,
bias counted, 2 FLOPs per multiply-add, halved for ResNets only; so it matches G-MACs here for ResNets and
overstates grouped and depthwise networks many times over (MobileNetV2: 11.1 G against 0.30 G-MACs).</dd>

<dt>Inference time</dt>
<dd>The <b>median</b> wall time of one forward pass of a whole batch (random input, <code>inference_mode</code>,
after warm-up; CUDA synchronised), repeated until its 95% confidence interval (order statistics) is within the
target or the time budget is spent. <b>Time per image</b> = median batch time / batch size;
<b>images/s</b> = batch size / median batch time (at batch size 1 this is frames per second). Cells timed while
other processes used the worker's CPUs beyond the cores its threads leave free are flagged <i>contended</i>;
the best deployment is chosen only among uncontended, converged cells.</dd>

<dt>Memory</dt>
<dd>On a CUDA device: the worker's device memory per NVML after the timed calls, above its figure before the
model was built (the CUDA context made): every runtime's allocations (PyTorch's, ONNX Runtime's arena, TensorRT's
engine), library kernels and workspaces; where NVML has no figure, the device's used memory above the same
baseline. Cells from before that was kept: <code>torch.cuda.max_memory_allocated</code>, which sees PyTorch's
tensors only. On the CPU: the
worker's peak resident set during the block above its resident set before the model was built (VmHWM): weights,
activations, allocator caches and lazily loaded kernels. MB means 2<sup>20</sup> bytes.</dd>

<dt>Energy</dt>
<dd>With <code>--metrics energy</code>: joules per image from NVML's total-energy counter (NVIDIA GPUs) or RAPL's
package counters (CPUs), read at the start and end of at least 3 s of forward passes, idle power measured just
before subtracted. Unavailable (with the reason) where no counter can be read.</dd>

<dt>Accuracy</dt>
<dd>Top-1 and top-5 accuracy (%) on the ImageNet-1k validation set. A <b>measured</b> figure (dnnbench evaluated
the named weights with the named preprocessing) is preferred; otherwise the <b>reported</b> figure of the model
zoo is used, with its source. Every point and row says which one it shows.</dd>

<dt>Derived indices</dt>
<dd><b>Accuracy density</b> = top-1 (%) / parameters (millions): accuracy per unit of model size.
<b>Achieved GFLOP/s</b> = 2 x MACs per image x images/s / 10<sup>9</sup>: the arithmetic rate the run sustained.
<b>Speed ratio</b> = images/s on machine A / images/s on machine B for the same model and config.
A model is on the <b>Pareto front</b> when no other model is at least as good on both axes and better on one
(e.g. more accurate and faster).</dd>

<dt>Peak FLOP/s, % of peak and the roofline</dt>
<dd>The <b>peak</b> of a device at a precision and thread count (<code>dnnbench peak</code>; stored per machine)
is the <b>spec estimate</b> - CPU: cores used (one per thread, at most the physical cores) x FLOP per cycle per
core x clock, with FLOP per cycle from a table of cores (FMA units x datapath width, e.g. AMD Zen 4: 2 x 8 fp32
lanes x 2 = 32; Intel AVX-512 with two FMA units: 64; AVX2: 32) and the precision's instructions
(<code>avx512_bf16</code> dot products 2x, AMX tiles, VNNI); CUDA: SMs x FLOP per cycle per SM of the compute
capability x the maximum SM clock - <b>raised to the best measured rate</b> of two short dense kernels in
PyTorch (a square matrix product and a 3x3 convolution) when a kernel beats it, e.g. because a virtual machine
shows the nominal clock and hides turbo. Unknown CPUs get a conservative estimate "from flags only".
<b>% of peak</b> = achieved GFLOP/s / the peak of the same machine, device, precision (the precision the backend
executed, TF32 when on) and threads. <b>Arithmetic intensity</b> = 2 x MACs x batch / bytes, with bytes = the
weights once + the input once + every convolution/linear output written and read once, at the cell's precision:
a compulsory-traffic model that places a model on the roofline, not a measured traffic. The slanted roof is the
bandwidth of a measured copy (STREAM-like) x intensity.</dd>

<dt>Config</dt>
<dd>A timed cell is identified by machine, model, device, dtype, batch size, intra-op threads, backend and input
size (and TF32 on CUDA). Machines are identified by a hash of their hardware (host name, CPU, cores, memory,
GPUs); their full fingerprint is listed in the Machines section.</dd>

<dt>Failed cells</dt>
<dd>Cells that ran out of memory (<code>oom</code>), timed out, crashed, errored or were skipped (after an
out-of-memory at a smaller batch size) are listed with their status; figures that need their value leave them
out and say so below the figure.</dd>
</dl>
"""
