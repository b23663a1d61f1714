"""What every model source does: resolve a name, build it on any device, name its weights with their
preprocessing, load them, and list its names by pattern.

A source module imports its library (torch, torchvision, timm, ...) only inside these methods, so that
naming, listing the seed zoo and resolving seed models never import torch.
"""

from __future__ import annotations

import contextlib
import fnmatch
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..spec import ModelSpec, Preprocessing, WeightsSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..checkpoints import LoadedModel


@dataclass(frozen=True)
class PublishedWeights:
    """Pretrained weights as their publisher names them, with the preprocessing they were trained for:
    preprocessing belongs to the weights, not to the architecture."""

    ref: str  # "PREFIX:TAG", e.g. "timm:dpn68.mx_in1k"
    preprocessing: Preprocessing
    origin: str  # where the preprocessing was read from, in words


# In-place operations that only set values: on the meta device there are none to set. Initialisers
# (timm's trunc_normal_: uniform_, erfinv_, mul_, add_, clamp_) run their meta kernels through PyTorch's
# Python reference implementations, about half the time of building a model on meta. Never an op that
# changes a shape (resize_, unsqueeze_, ...).
VALUE_ONLY_IN_PLACE = frozenset((
    "uniform_", "normal_", "erfinv_", "clamp_", "clamp_min_", "clamp_max_", "mul_", "add_", "sub_", "div_",
    "fill_", "zero_", "copy_", "exponential_", "bernoulli_", "random_", "log_normal_", "cauchy_", "geometric_",
    "sqrt_", "exp_", "log_", "neg_", "abs_", "addcmul_", "addcdiv_", "lerp_", "masked_fill_", "index_fill_",
    "orthogonal_",
))


def _value_init_skipped_class() -> type:
    from torch.utils._python_dispatch import TorchDispatchMode

    class ValueInitSkipped(TorchDispatchMode):
        """Value-only in-place ops on meta tensors return their tensor untouched (their result on meta)."""

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            target = args[0] if args else None
            if (getattr(target, "is_meta", False) and func._schema.name.split("::")[-1] in VALUE_ONLY_IN_PLACE
                    and func._overloadname != "out"):
                return target
            return func(*args, **(kwargs or {}))

    return ValueInitSkipped


def _ValueInitSkipped() -> Any:  # noqa: N802  a context manager, built lazily: this module imports no torch
    return _value_init_skipped_class()()


@contextlib.contextmanager
def _registered_on_meta() -> Any:
    """Every parameter and buffer a module registers goes to the meta device; other tensors stay where
    they are made. CPU tensors from torch.empty are never written (the initialisers are skipped), so
    their pages are never touched."""
    from torch import nn

    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self: nn.Module, name: str, param: Any) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self: nn.Module, name: str, tensor: Any, persistent: bool = True) -> None:
        register_buffer(self, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer  # type: ignore


def matching(names: Iterable[str], pattern: str) -> list[str]:
    """`names` that match the fnmatch `pattern`, case-insensitively, in their order."""
    pattern = pattern.lower()
    return [n for n in names if fnmatch.fnmatchcase(n.lower(), pattern)]


class ModelSource(ABC):
    """One library of models, named `PREFIX:NAME` (e.g. `timm:convnext_tiny`).

    Adding a source is one module in this package that defines `SOURCE = YourSource()`; the registry
    (`dnnbench.zoo.sources`) finds it by itself.
    """

    prefix: str  # what comes before the colon
    description: str  # in words, for messages: "timm's models"
    listable: bool = True  # False where names cannot be enumerated (your own code)

    @abstractmethod
    def resolve(self, name: str) -> ModelSpec:
        """The spec of `name` (without the prefix), fed as its default weights say; UnknownModelError if none."""

    @abstractmethod
    def construct(self, name: str, kwargs: dict[str, Any]) -> nn.Module:
        """The library's constructor call, randomly initialised; `build` sets the device and eval mode."""

    @abstractmethod
    def list_names(self, pattern: str = "*") -> list[str]:
        """Full names (`PREFIX:NAME`) of the models matching the fnmatch `pattern` (without the prefix)."""

    def build(self, name: str, device: str | torch.device = "cpu", **kwargs: Any) -> nn.Module:
        """`name` with freshly initialised weights, in eval mode, on `device` (meta: shapes without storage,
        and no time spent initialising values that do not exist)."""
        import torch

        if torch.device(device).type != "meta":
            with torch.device(device), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return self.construct(name, kwargs).eval()
        try:
            with torch.device(device), warnings.catch_warnings(), _ValueInitSkipped():
                warnings.simplefilter("ignore", FutureWarning)
                return self.construct(name, kwargs).eval()
        except NotImplementedError:
            # the constructor computes with tensors (torchvision's RegNet derives its widths with
            # torch.arange and reads them back), which the meta device has no values for: build on the CPU
            # with only the parameters and buffers put on meta as they are registered
            with _registered_on_meta(), warnings.catch_warnings(), _ValueInitSkipped():
                warnings.simplefilter("ignore", FutureWarning)
                return self.construct(name, kwargs).eval()

    def weights(self, tag: str) -> PublishedWeights:
        """The weights `PREFIX:TAG` with the preprocessing their publisher evaluates them with."""
        raise UsageError(f"{self.prefix}:{tag}: {self.description} publish no pretrained weights")

    def load_weights(self, spec: ModelSpec) -> LoadedModel:
        """`spec` built with its pretrained weights `spec.weights.ref`, on the CPU."""
        from ..checkpoints import WeightsUnavailableError

        raise WeightsUnavailableError(f"{spec.id}: dnnbench cannot fetch weights {spec.weights.ref}")

    def seed_weights(self, name: str, row: Mapping[str, str]) -> WeightsSpec:
        """The weights a seed model built as `PREFIX:name` loads, from its row of the reference table."""
        return WeightsSpec(ref=None, same_as_2018=None, provenance=f"2018: {row['weights_2018']}")

    def full_name(self, name: str) -> str:
        return f"{self.prefix}:{name}"
