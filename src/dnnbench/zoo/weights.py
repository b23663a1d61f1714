"""Pretrained weights for accuracy: fetched through each library's own mechanism and cache (each
source's `load_weights` in zoo/sources/, with the helpers of zoo/checkpoints.py), or read from a file the
user gives.

- torchvision: the weights enum (`ResNet50_Weights.IMAGENET1K_V1`), its URL, torch.hub's cache
  (`$TORCH_HOME/hub/checkpoints`), and torchvision's own builder (which remaps old DenseNet keys and sets
  GoogLeNet/Inception-v3's `transform_input`).
- timm: the pretrained config of the tag; the file comes from the Hugging Face cache (`hf_hub_id`) or
  torch.hub's cache (`url`), and timm's `create_model(pretrained=True)` loads it with its own filter.
- pretrainedmodels: `pretrained_settings[name]["imagenet"]["url"]` through torch.hub's cache.
- a file (`--weights PATH`): safetensors, or a torch checkpoint read with `torch.load(weights_only=True)`.

Every pickle is read with `weights_only=True`: a checkpoint that would run code is refused. Offline
(`DNNBENCH_OFFLINE=1` or `HF_HUB_OFFLINE=1`) nothing is downloaded; a file that is not cached gives an
error naming its URL and the exact place to put it.
"""

from __future__ import annotations

from pathlib import Path

from .builders import build_model
from .checkpoints import (  # noqa: F401 - their names before the split, still importable from here
    DOWNLOAD_TIMEOUT_S,
    OFFLINE_VARIABLES,
    LoadedModel,
    UnsafeCheckpointError,
    WeightsError,
    WeightsIdentity,
    WeightsMismatchError,
    WeightsUnavailableError,
    ensure_in_hub_cache,
    file_sha256,
    fit_state_dict,
    hf_cache_dir,
    hf_hub_file,
    hub_checkpoint_path,
    is_offline,
    read_state_dict,
)
from .sources import get_source
from .sources.pretrainedmodels_source import pretrainedmodels_settings  # noqa: F401 - its old home
from .spec import ModelSpec


def weights_key(spec: ModelSpec, weights_file: str | Path | None = None) -> str:
    """What identifies the weights in a result's config, known before loading anything."""
    if weights_file is not None:
        try:
            return f"file:sha256:{file_sha256(weights_file)}"
        except OSError:
            return f"file:{weights_file}"
    return spec.weights.ref or "none"


def load_model(spec: ModelSpec, weights_file: str | Path | None = None) -> LoadedModel:
    """`spec` with its pretrained weights (or those of `weights_file`), on the CPU, in eval mode."""
    if weights_file is not None:
        loaded = _from_file(spec, Path(weights_file).expanduser())
    elif spec.weights.ref is None:
        raise WeightsUnavailableError(
            f"{spec.id}: no pretrained weights exist for it in any maintained library; "
            "pass a checkpoint with --weights FILE")
    else:
        loaded = get_source(spec.weights.library).load_weights(spec)
    loaded.model.eval()
    return loaded



def _from_file(spec: ModelSpec, path: Path) -> LoadedModel:
    state, key = read_state_dict(path)
    sha = file_sha256(path)
    model = build_model(spec, "cpu")
    prefix = fit_state_dict(model, state, str(path))
    identity = WeightsIdentity("file", None, str(path.resolve()), sha, checkpoint_key=key, stripped_prefix=prefix)
    return LoadedModel(model, identity)

