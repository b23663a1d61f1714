"""ImageNet validation sets in their common layouts: found, labelled, fingerprinted, subsetted."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dnnbench.data.classes import NUM_CLASSES, LabelError, imagenet_synsets, parse_label, synset_to_index
from dnnbench.data.dataset import EvaluationDataset
from dnnbench.data.imagenet import ACCEPTED_LAYOUTS, DatasetLayoutError, ImageNetSplit, open_imagenet
from dnnbench.data.preprocessing import DEFAULT_PREPROCESSING
from dnnbench.data.transforms import build_transform
from dnnbench_accuracy_models import CLASSES, copy_as_devkit, copy_as_kaggle, draw, write_path_label_csv


@pytest.fixture(scope="module")
def class_root(tmp_path_factory):
    """Three classes of four small JPEGs each."""
    root = tmp_path_factory.mktemp("imagenet") / "val"
    rng = np.random.default_rng(0)
    for kind in range(3):
        folder = root / CLASSES[kind][0]
        folder.mkdir(parents=True)
        for j in range(4):
            draw(kind, rng, size=(40, 30)).save(folder / f"img{j}.JPEG")
    return root


def pairs(split):
    """(file bytes, label) of every image: layouts that name files differently compare equal."""
    return sorted((split.file(i).read_bytes(), label) for i, label in enumerate(split.labels))


def test_synset_list_is_timms():
    from importlib import resources

    timm_list = resources.files("timm.data").joinpath("_info/imagenet_synsets.txt").read_text().split()
    assert list(imagenet_synsets()) == timm_list
    assert len(set(imagenet_synsets())) == NUM_CLASSES and list(imagenet_synsets()) == sorted(imagenet_synsets())
    assert synset_to_index()["n01440764"] == 0 and synset_to_index()["n15075141"] == 999


def test_labels_are_synsets_or_indices_in_range():
    assert parse_label("n01443537", "x") == parse_label(" 1 ", "x") == 1
    for bad, message in (("1000", "out of range 0..999"), ("-1", "out of range"), ("n99999999", "not one of the 1000"),
                         ("cat", "neither an ImageNet synset")):
        with pytest.raises(LabelError, match=message):
            parse_label(bad, "labels.csv:3")


def test_every_layout_gives_the_same_labelled_images(class_root, tmp_path):
    folders = open_imagenet(class_root)
    assert folders.layout == "class-folders" and len(folders) == 12 and folders.classes == (0, 1, 2)
    assert open_imagenet(class_root.parent).paths == folders.paths  # DIR/val is found by itself

    images, ground_truth, synsets = copy_as_devkit(class_root, tmp_path / "devkit")
    devkit = open_imagenet(images, labels=ground_truth, synsets=synsets)
    kaggle = open_imagenet(copy_as_kaggle(class_root, tmp_path / "kaggle"))
    kaggle_flat = open_imagenet(tmp_path / "kaggle" / "ILSVRC" / "Data" / "CLS-LOC" / "val",
                                labels=tmp_path / "kaggle" / "LOC_val_solution.csv")
    csv_file = open_imagenet(write_path_label_csv(class_root, tmp_path / "lists" / "val.csv"))
    assert [s.layout for s in (devkit, kaggle, csv_file)] == ["devkit", "kaggle", "csv"]
    for split in (devkit, kaggle, kaggle_flat, csv_file):
        assert pairs(split) == pairs(folders)


def test_devkit_ground_truth_needs_the_devkit_class_order(class_root, tmp_path):
    images, ground_truth, _ = copy_as_devkit(class_root, tmp_path)
    (images / ground_truth.name).write_bytes(ground_truth.read_bytes())  # found in the image folder itself
    with pytest.raises(DatasetLayoutError, match="devkit's own order"):
        open_imagenet(images)
    short = tmp_path / "short.txt"
    short.write_text("\n".join(imagenet_synsets()[:999]))
    with pytest.raises(LabelError, match="lists 999 synsets"):
        open_imagenet(images, labels=ground_truth, synsets=short)


def test_wrong_layouts_list_the_accepted_ones(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "cats" / "tabby").mkdir(parents=True)
    (tmp_path / "flat").mkdir()
    draw(0, np.random.default_rng(0)).save(tmp_path / "flat" / "a.JPEG")
    for path, message in ((tmp_path / "missing", "does not exist"), (tmp_path / "empty", "is empty"),
                          (tmp_path / "cats", "none named after an ImageNet synset"),
                          (tmp_path / "flat", "no label file")):
        with pytest.raises(DatasetLayoutError, match=message) as caught:
            open_imagenet(path)
        assert ACCEPTED_LAYOUTS in str(caught.value) and "class folders" in str(caught.value)


def test_out_of_range_labels_and_unknown_synset_folders(tmp_path):
    (tmp_path / "val" / "n99999999").mkdir(parents=True)
    with pytest.raises(LabelError, match="n99999999 is a WordNet synset but not one of the 1000"):
        open_imagenet(tmp_path / "val")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.JPEG,3\nb.JPEG,1000\n")
    with pytest.raises(LabelError, match=r"bad.csv:3: class index 1000 is out of range 0..999"):
        open_imagenet(bad)


def test_limit_is_stratified_deterministic_and_order_free():
    labels = [0] * 10 + [1] * 10 + [2] * 2
    paths = [f"c{label}/img{i:02d}.JPEG" for i, label in enumerate(labels)]
    split = ImageNetSplit(root=Path("/x"), layout="csv", paths=tuple(paths), labels=tuple(labels))
    shuffled = ImageNetSplit(split.root, "csv", tuple(reversed(paths)), tuple(reversed(labels)))
    for limit, per_class in ((6, [2, 2, 2]), (9, [4, 3, 2]), (12, [5, 5, 2])):
        subset = split.subset(limit)
        assert len(subset) == limit
        assert [subset.labels.count(c) for c in range(3)] == per_class
        assert sorted(subset.paths) == sorted(shuffled.subset(limit).paths)  # whatever order files are listed in
    assert split.subset(None) is split and split.subset(100) is split


def test_fingerprint_follows_the_file_list_and_labels(class_root, tmp_path):
    a, b = open_imagenet(class_root), open_imagenet(class_root)
    assert a.fingerprint == b.fingerprint and a.fingerprint.images == 12
    relabelled = ImageNetSplit(a.root, a.layout, a.paths, (5,) + a.labels[1:])
    fewer = ImageNetSplit(a.root, a.layout, a.paths[1:], a.labels[1:])
    assert len({a.fingerprint.sha256, relabelled.fingerprint.sha256, fewer.fingerprint.sha256}) == 3


def test_unreadable_images_are_reported_not_raised(class_root, tmp_path):
    bad = tmp_path / "bad.csv"
    (tmp_path / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    good = class_root / CLASSES[0][0] / "img0.JPEG"
    bad.write_text(f"path,label\n{good},0\nbroken.JPEG,0\nnot-there.JPEG,1\n")
    dataset = EvaluationDataset(open_imagenet(bad), build_transform(DEFAULT_PREPROCESSING))
    image, label, index, error = dataset[0]
    assert error == "" and image.shape == (3, 224, 224) and label == 0
    for i in (1, 2):
        image, _, index, error = dataset[i]
        assert index == i and error and torch.count_nonzero(image) == 0
    assert "No such file" in dataset[2][3]
