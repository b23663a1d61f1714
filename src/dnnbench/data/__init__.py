"""ImageNet-1k validation data for accuracy: the 1000 classes, the layouts a validation set comes in,
and the eval transform each model's weights expect.

    >>> from dnnbench.data import open_imagenet, input_plan, build_transform   # doctest: +SKIP
    >>> split = open_imagenet("/data/imagenet/val")                            # doctest: +SKIP
"""

from .classes import NUM_CLASSES, LabelError, imagenet_synsets, parse_label, synset_to_index
from .dataset import EvaluationDataset
from .imagenet import ACCEPTED_LAYOUTS, DatasetFingerprint, DatasetLayoutError, ImageNetSplit, open_imagenet
from .preprocessing import DEFAULT_PREPROCESSING, InputPlan, input_plan, paper_preprocessing, weights_preprocessing
from .transforms import ImageTransform, build_transform, load_rgb

__all__ = [
    "ACCEPTED_LAYOUTS", "DEFAULT_PREPROCESSING", "NUM_CLASSES", "DatasetFingerprint", "DatasetLayoutError",
    "EvaluationDataset", "ImageNetSplit", "ImageTransform", "InputPlan", "LabelError", "build_transform",
    "imagenet_synsets", "input_plan", "load_rgb", "open_imagenet", "paper_preprocessing", "parse_label",
    "synset_to_index", "weights_preprocessing",
]
