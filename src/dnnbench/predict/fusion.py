"""What OpenVINO's CPU plug-in does not run as operators of their own: a pass over a traced forward pass.

Eager PyTorch runs a network operator by operator; OpenVINO's CPU plug-in compiles it, and on the way folds and
fuses operators into their producers (docs/PREDICTION.md gives the sources). An operator calibrated as a
one-operator model would be counted again in a prediction that summed every traced operator, so `openvino_fusions`
says, per traced operator, whether it runs as a node of its own or is absorbed (into which producer, by which
rule). The rules follow the trace's data dependence (`OperatorCall.inputs`: which call produced each tensor
input), not adjacency, and a tensor read by more than one operator is never fused away (its value is needed
as it is):

- **batch norm into the convolution or linear layer before it** (`fold`): the frontend turns an inference batch
  norm into a multiply and an add, which the common transformations fold into the producer's weights and bias,
  when the producer's output feeds only the batch norm and nothing was fused into it yet;
- **activations into their producer** (`activation`): relu, clamp (relu6, hardtanh), sigmoid, swish (silu),
  hswish, hsigmoid, gelu, elu, mish, tanh, abs, sqrt after a convolution or fully connected layer (post-ops of
  the oneDNN primitive), or after an element-wise node (one element-wise subgraph);
- **the residual add into a convolution** (`sum`): an add of two same-shaped tensors one of which is a
  convolution's output read by the add alone is that convolution's sum post-op (one per convolution; of two such
  convolutions the one traced later, whose other input is then ready), and activations after it follow;
- **element-wise chains** (`eltwise`): an element-wise operator (add, sub, mul, div, a batch norm not folded,
  an activation) whose input is an element-wise node's output read by it alone joins that node;
- **in place** (`in place`): reshapes, flattens, squeezes, identities (dropout, clone, contiguous, detach, a
  concatenation of one tensor): memory reinterpretations the plug-in executes without a kernel;
- **nested concatenations** (`concat`): a concatenation read only by another concatenation is merged into it
  (Inception-v3's inner concatenations).

Checked against the plug-in's own runtime model (its layer types after compilation) for ResNet-18,
MobileNetV2, DenseNet-121, SE-ResNet-50, SqueezeNet 1.0 and Inception-v3: the operators left running on their
own are, kind for kind, the plug-in's Convolution, FullyConnected, Pooling, Reduce, Concatenation and
element-wise Subgraph nodes (docs/PREDICTION.md).

Not modelled: concatenations written in place by their producers, a multiply by a per-channel constant fused
into a convolution (the traced networks apply theirs through batch norm), pooling fusions (int8 only).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CONVOLUTION = "convolution"
FULLY_CONNECTED = "fully connected"
ELEMENTWISE = "element-wise"
OTHER = "other"

ACTIVATIONS = frozenset({"relu", "hardtanh", "relu6", "clamp", "clamp_min", "clamp_max", "sigmoid", "silu",
                         "hardswish", "hardsigmoid", "gelu", "elu", "leaky_relu", "mish", "tanh", "abs", "sqrt"})
BINARY_ELEMENTWISE = frozenset({"add", "sub", "mul", "div", "rsub"})
NORMALISATION = frozenset({"batch_norm", "native_batch_norm", "_native_batch_norm_legit_no_training"})
FULLY_CONNECTED_KINDS = frozenset({"linear", "addmm", "mm", "matmul"})
IN_PLACE = frozenset({"view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze", "alias", "detach",
                      "dropout", "clone", "contiguous", "feature_dropout"})


@dataclass(frozen=True)
class Fusion:
    """Per traced operator: the index of the operator it is absorbed into (None: it runs on its own; -1: in
    place, no node at all) and the rule that absorbed it ("" when none)."""

    into: tuple[int | None, ...]
    rules: tuple[str, ...]

    @property
    def absorbed(self) -> int:
        return sum(i is not None for i in self.into)

    def counts(self) -> Counter:
        return Counter(rule for rule in self.rules if rule)


def node_type(kind: str) -> str:
    if kind.startswith("conv2d") or kind in {"convolution", "_convolution", "conv1d", "conv3d"}:
        return CONVOLUTION
    if kind in FULLY_CONNECTED_KINDS:
        return FULLY_CONNECTED
    if kind in ACTIVATIONS or kind in BINARY_ELEMENTWISE or kind in NORMALISATION:
        return ELEMENTWISE
    return OTHER


def _same_shaped_binary(call: Any) -> bool:
    f = call.features
    return len([p for p in call.inputs]) == 2 and f.get("in_bytes", 0) == 2 * f.get("out_bytes", -1)


def openvino_fusions(calls: Sequence[Any]) -> Fusion:
    """Which of `calls` (a trace's OperatorCalls, in order, with their `inputs`) OpenVINO's CPU plug-in absorbs,
    by the rules of the module docstring."""
    consumers: Counter = Counter(p for call in calls for p in call.inputs if p >= 0)
    readers: dict[int, int] = {p: i for i, call in enumerate(calls) for p in call.inputs if p >= 0}
    into: list[int | None] = [None] * len(calls)
    rules = [""] * len(calls)
    root = list(range(len(calls)))  # the node each call's output belongs to
    types = [node_type(c.kind) for c in calls]
    folded_into: set[int] = set()  # nodes something was already fused into (a fold must come first)
    summed: set[int] = set()  # convolutions with their sum post-op

    def absorb(i: int, node: int, rule: str) -> None:
        into[i], rules[i], root[i] = node, rule, node
        folded_into.add(node)

    for i, call in enumerate(calls):
        kind = call.kind
        activations = [p for p in call.inputs if p >= 0]
        first = activations[0] if activations else None
        sole = first is not None and consumers[first] == 1
        if kind in IN_PLACE or (kind == "cat" and call.features.get("tensor_inputs") == 1):
            into[i], rules[i] = -1, "in place"
            types[i] = OTHER  # nothing fuses across it
            continue
        if kind == "cat" and consumers[i] == 1 and calls[readers[i]].kind == "cat":
            into[i], rules[i] = readers[i], "concat"
            continue
        if first is None:
            continue
        node = root[first]
        if kind in NORMALISATION and sole and types[node] in (CONVOLUTION, FULLY_CONNECTED) and first == node \
                and node not in folded_into:
            absorb(i, node, "fold")
        elif kind in ACTIVATIONS and sole and types[node] in (CONVOLUTION, FULLY_CONNECTED, ELEMENTWISE):
            absorb(i, node, "activation")
        elif kind == "add" and _same_shaped_binary(call):
            candidates = [root[p] for p in activations if consumers[p] == 1 and types[root[p]] == CONVOLUTION
                          and root[p] not in summed]
            eltwise = [root[p] for p in activations if consumers[p] == 1 and types[root[p]] == ELEMENTWISE]
            if candidates:
                summed.add(max(candidates))
                absorb(i, max(candidates), "sum")
            elif eltwise:
                absorb(i, max(eltwise), "eltwise")
        elif node_type(kind) == ELEMENTWISE and sole and types[node] == ELEMENTWISE:
            absorb(i, node, "eltwise")
    return Fusion(tuple(into), tuple(rules))
