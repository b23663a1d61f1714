"""Before a backend is timed, its logits on a fixed input are compared with eager PyTorch in fp32.

A fast backend that computes something else is not a deployment: the figures are stored with every
timing, and a backend beyond the tolerance of its precision is flagged in every table and never
chosen as "best".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

# Per executed precision: the least cosine similarity and the largest max-abs error relative to the
# reference's largest logit. fp32 backends reorder sums (fused kernels, other algorithms): ~1e-5
# relative; bf16 keeps 8 significant bits, fp16 11.
TOLERANCES = {"fp32": (0.99999, 1e-3), "fp16": (0.999, 2e-2), "bf16": (0.99, 1e-1)}
CHECK_BATCH = 4
CHECK_SEED = 20180101


@dataclass(frozen=True)
class OutputCheck:
    max_abs_error: float
    relative_max_error: float  # max |out - ref| / max |ref|
    cosine_similarity: float  # of the flattened logits
    top1_agreement: float  # fraction of the images whose top-1 class is the reference's
    top5_agreement: float  # mean overlap of the top-5 sets
    precision: str
    min_cosine: float
    max_relative_error: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def check_input(input_size: int, device: torch.device | str = "cpu", batch_size: int = CHECK_BATCH) -> torch.Tensor:
    """The fixed input every backend of a model is checked on: seeded, image-like statistics (N(0, 1)
    after normalisation), the same in every process. The engine checks at the job's smallest batch
    size, so that backends which compile per shape (inductor, OpenVINO) compile no extra shape."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    return torch.randn(batch_size, 3, input_size, input_size, generator=generator).to(device)


def compare(output: torch.Tensor, reference: torch.Tensor, precision: str) -> OutputCheck:
    output, reference = output.detach().double().cpu(), reference.detach().double().cpu()
    if output.shape != reference.shape:
        raise ValueError(f"the backend's output has shape {tuple(output.shape)}, eager's {tuple(reference.shape)}")
    difference = (output - reference).abs()
    max_abs = float(difference.max()) if difference.numel() else 0.0
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    relative = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    cosine = float(torch.nn.functional.cosine_similarity(output.flatten(), reference.flatten(), dim=0, eps=1e-30))
    if not torch.isfinite(output).all():
        cosine, relative = float("nan"), float("inf")
    top1 = float((output.argmax(-1) == reference.argmax(-1)).double().mean())
    k = min(5, reference.shape[-1])
    out_top, ref_top = output.topk(k, -1).indices, reference.topk(k, -1).indices
    overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(out_top, ref_top)]
    min_cosine, max_relative = TOLERANCES[precision]
    passed = cosine >= min_cosine and relative <= max_relative
    return OutputCheck(max_abs, relative, cosine, top1, sum(overlap) / len(overlap), precision, min_cosine,
                       max_relative, passed)
