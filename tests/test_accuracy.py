"""Accuracy end to end: a network trained here on generated ImageNet-style images, evaluated by
`dnnbench accuracy` and checked against an independent count."""

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torchvision import transforms as T

from dnnbench.data.classes import synset_to_index
from dnnbench.measure.accuracy import evaluate_accuracy, wilson_interval
from dnnbench.run.accuracy import accuracy_sweep
from dnnbench.store import Store
from dnnbench_accuracy_models import CLASSES, copy_as_devkit, copy_as_kaggle, draw, shape_net, write_path_label_csv

SHAPE_NET = "python:dnnbench_accuracy_models:shape_net"
WIDE_NET = "python:dnnbench_accuracy_models:wide_shape_net"
SEGFAULTING_NET = "python:dnnbench_accuracy_models:segfaulting_shape_net"
TESTS = Path(__file__).parent
PER_CLASS = 10
MISLABELLED = {0: 3, 1: 4}  # class folder -> class actually drawn in its first image
# the evaluation recipe written independently of dnnbench: torchvision's classic ImageNet transform
REFERENCE = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Trained:
    root: Path  # class folders
    weights: Path  # safetensors
    n: int
    top1_correct: int
    top5_correct: int


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Six classes of coloured shapes, a network trained on them, its weights, and its accuracy on a
    separate evaluation folder counted here (two images are filed under the wrong class, one is broken)."""
    work = tmp_path_factory.mktemp("accuracy")
    index = [synset_to_index()[synset] for synset, _, _ in CLASSES]
    rng = np.random.default_rng(0)
    images = torch.stack([REFERENCE(draw(k, rng)) for k in range(len(CLASSES)) for _ in range(16)])
    targets = torch.tensor([index[k] for k in range(len(CLASSES)) for _ in range(16)])
    torch.manual_seed(0)
    net = shape_net()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    pooled = net.pool(images)  # the fixed first layer, computed once
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(net.head(torch.relu(net.stem(pooled)).mean((2, 3))), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()

    root = work / "val"
    rng = np.random.default_rng(1)
    files = []
    for k, (synset, _, _) in enumerate(CLASSES):
        (root / synset).mkdir(parents=True)
        for j in range(PER_CLASS):
            drawn = MISLABELLED.get(k, k) if j == 0 else k
            path = root / synset / f"img_{j:02d}.JPEG"
            draw(drawn, rng).save(path, quality=90)
            files.append((path, index[k]))
    (root / CLASSES[2][0] / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    weights = work / "shape_net.safetensors"
    save_file(net.state_dict(), weights)

    from PIL import Image

    with torch.no_grad():
        logits = net(torch.stack([REFERENCE(Image.open(p).convert("RGB")) for p, _ in files]))
    labels = torch.tensor([label for _, label in files])
    top5 = logits.topk(5, dim=1).indices
    t = Trained(root, weights, len(files), int((top5[:, 0] == labels).sum()), int((top5 == labels[:, None]).any(dim=1).sum()))
    assert t.n - len(MISLABELLED) - 2 <= t.top1_correct <= t.n - len(MISLABELLED)  # it learned the shapes
    return t


def dnnbench(*args, env_extra=None):
    # this checkout's sources first: the venv's editable install may point at another one
    path = os.pathsep.join((str(TESTS.parent / "src"), str(TESTS)))
    env = {"PATH": "", "COLUMNS": "200", "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "dnnbench", "accuracy", *args], capture_output=True, text=True, env=env)


def assert_counts(result, t):
    assert result.status == "ok", result.error
    assert (result.n, result.top1_correct, result.top5_correct, result.corrupt) == (t.n, t.top1_correct, t.top5_correct, 1)


def test_cli_reports_exactly_the_independently_counted_accuracy(trained, tmp_path):
    db, predictions = tmp_path / "results.sqlite", tmp_path / "predictions.csv"
    done = dnnbench("resnet18", SHAPE_NET, "--data", str(trained.root), "--weights", f"{SHAPE_NET}={trained.weights}",
                    "--db", str(db), "--save-predictions", str(predictions), "--workers", "2", "--batch-size", "8",
                    env_extra={"TORCH_HOME": str(tmp_path / "torch"), "HF_HUB_CACHE": str(tmp_path / "hf")})
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "only 6 of the 1000 ImageNet classes" in out and "1 image(s) could not be read" in out
    with Store(db) as store:
        records = {r.model: r for r in store.results(metric="accuracy")}
        (run,) = store.runs()
    assert run["status"] == "finished"
    # resnet18's weights are not cached and nothing may be downloaded: recorded, and the sweep went on
    assert records["resnet18"].status == "unavailable"
    assert "resnet18-f37072fd.pth" in records["resnet18"].error and "--weights FILE" in records["resnet18"].error
    record = records[SHAPE_NET]
    values, config = record.values, record.config
    assert record.status == "ok"
    assert (values.n, values.top1_correct, values.top5_correct) == (trained.n, trained.top1_correct, trained.top5_correct)
    assert values.top1 == 100 * trained.top1_correct / trained.n and values.corrupt == 1
    assert values.top1_ci == tuple(100 * v for v in wilson_interval(trained.top1_correct, trained.n))
    assert values.ci_method == "wilson" and values.classes_seen == 6 and values.images_per_s > 0
    assert sum(c.n for c in values.per_class) == trained.n
    assert [c.synset for c in values.per_class] == sorted(s for s, _, _ in CLASSES)
    assert values.weights.sha256 == config["weights"].removeprefix("file:sha256:")
    assert config["preprocessing"] == "weights" and config["limit"] is None
    assert (config["device"], config["dtype"]) == ("cpu", "fp32")
    assert config["dataset"]["images"] == trained.n + 1 and config["dataset"]["path"] == str(trained.root.resolve())
    rows = list(csv.DictReader(predictions.open()))
    assert len(rows) == trained.n + 1 and {r["model"] for r in rows} == {SHAPE_NET}
    assert sum(int(r["top1_correct"] or 0) for r in rows) == trained.top1_correct
    assert [r["path"] for r in rows if r["error"]] == [f"{CLASSES[2][0]}/broken.JPEG"]


def test_every_layout_gives_the_same_accuracy(trained, tmp_path):
    images, ground_truth, synsets = copy_as_devkit(trained.root, tmp_path / "devkit")
    kaggle = copy_as_kaggle(trained.root, tmp_path / "kaggle")
    listing = write_path_label_csv(trained.root, tmp_path / "lists" / "val.csv")
    for data, labels, synset_order in ((trained.root, None, None), (images, ground_truth, synsets), (kaggle, None, None),
                                       (listing, None, None)):
        result = evaluate_accuracy(SHAPE_NET, data, labels=labels, synsets=synset_order, weights=trained.weights,
                                   workers=0, batch_size=16)
        assert_counts(result, trained)
    paper = evaluate_accuracy(SHAPE_NET, trained.root, weights=trained.weights, paper_preprocessing=True, workers=0)
    assert_counts(paper, trained)  # no library config: the same default recipe in both modes
    assert paper.config["preprocessing"] == "paper" and paper.plan.mode == "paper"


def test_a_wrapped_torch_checkpoint_gives_the_same_accuracy(trained, tmp_path):
    from safetensors.torch import load_file

    checkpoint = tmp_path / "ddp.pth"
    torch.save({"epoch": 60, "state_dict": {f"module.{k}": v for k, v in load_file(trained.weights).items()}}, checkpoint)
    result = evaluate_accuracy(SHAPE_NET, trained.root, weights=checkpoint, workers=0, batch_size=16)
    assert_counts(result, trained)
    assert (result.weights.checkpoint_key, result.weights.stripped_prefix) == ("state_dict", "module.")


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_failures_are_recorded_and_the_sweep_goes_on(trained, tmp_path):
    db = tmp_path / "results.sqlite"
    sweep = accuracy_sweep([WIDE_NET, "shufflenet", SHAPE_NET], trained.root, db=db, workers=0,
                           weights={WIDE_NET: trained.weights, SHAPE_NET: trained.weights})
    wide, shufflenet, shape = sweep.results
    assert wide.status == "error" and "first mismatching key 'stem.weight'" in wide.error
    assert shufflenet.status == "unavailable" and "no pretrained weights exist" in shufflenet.error
    assert_counts(shape, trained)
    with Store(db) as store:
        assert {r.model: r.status for r in store.results()} == {WIDE_NET: "error", "shufflenet": "unavailable", SHAPE_NET: "ok"}
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": RunsCode(marker)}, tmp_path / "evil.pth")
    refused = evaluate_accuracy(SHAPE_NET, trained.root, weights=tmp_path / "evil.pth", workers=0)
    assert refused.status == "error" and "was refused" in refused.error and "system" in refused.error
    assert not marker.exists()


def test_a_model_that_crashes_its_process_is_recorded_and_the_next_one_evaluated(trained, tmp_path):
    db = tmp_path / "results.sqlite"
    sweep = accuracy_sweep([SEGFAULTING_NET, SHAPE_NET], trained.root, db=db, workers=0, limit=12,
                           weights={SEGFAULTING_NET: trained.weights, SHAPE_NET: trained.weights})
    crashed, shape = sweep.results
    assert crashed.status == "crash" and "SIGSEGV" in crashed.error and "evaluation" in crashed.error
    assert shape.status == "ok" and shape.n + shape.corrupt == 12
    assert sweep.evaluated == [SEGFAULTING_NET, SHAPE_NET]
    with Store(db) as store:
        assert {r.model: r.status for r in store.results(metric="accuracy")} == {SEGFAULTING_NET: "crash", SHAPE_NET: "ok"}
        assert [run["status"] for run in store.runs()] == ["finished"]


def test_a_second_identical_command_evaluates_nothing_and_says_so(trained, tmp_path):
    db, predictions = tmp_path / "results.sqlite", tmp_path / "predictions.csv"
    args = (SHAPE_NET, "--data", str(trained.root), "--weights", str(trained.weights), "--db", str(db), "--limit", "12",
            "--workers", "0", "--save-predictions", str(predictions))
    first = dnnbench(*args)
    assert first.returncode == 0, first.stderr
    assert "already in" not in first.stdout
    rows = predictions.read_text()
    with Store(db) as store:
        (measured,) = store.results(metric="accuracy")
    second = dnnbench(*args)
    assert second.returncode == 0, second.stderr
    out = " ".join(second.stdout.split())
    assert "nothing evaluated: every model already in" in out and "1 ok" in out
    assert f"{measured.values.top1:.2f}" in out  # the table shows the stored result
    with Store(db) as store:
        (kept,) = store.results(metric="accuracy")
        runs = store.runs()
    assert (kept.run_id, kept.finished_at) == (measured.run_id, measured.finished_at)  # not measured again
    assert [run["status"] for run in runs] == ["finished", "finished"]
    assert predictions.read_text() == rows  # nothing evaluated: the predictions file is left as it was
    # another --limit is another cell: measured
    third = accuracy_sweep([SHAPE_NET], trained.root, db=db, weights=trained.weights, workers=0, limit=6)
    assert third.evaluated == [SHAPE_NET] and third.results[0].n + third.results[0].corrupt == 6


def test_limit_takes_the_same_share_of_every_class(trained):
    result = evaluate_accuracy(SHAPE_NET, trained.root, weights=trained.weights, limit=12, workers=0)
    assert result.status == "ok" and result.config["limit"] == 12
    per_class = {c.synset: c.n for c in result.per_class}
    assert result.n + result.corrupt == 12
    assert sorted(per_class.values()) == ([1] if result.corrupt else []) + [2] * (6 - result.corrupt)
    assert result.top1_ci == tuple(100 * v for v in wilson_interval(result.top1_correct, result.n))
    assert any("--limit 12" in w for w in result.warnings)
    again = evaluate_accuracy(SHAPE_NET, trained.root, weights=trained.weights, limit=12, workers=0)
    assert again.per_class == result.per_class and again.top1_correct == result.top1_correct


def test_wilson_interval_known_answers():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (score interval)
    for successes, n, expected in ((81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)),
                                   (1, 29, (0.0061, 0.1718)), (29, 29, (0.8830, 1.0))):
        low, high = wilson_interval(successes, n)
        assert (round(low, 4), round(high, 4)) == expected


def test_a_wrong_folder_is_a_usage_error_listing_the_layouts(tmp_path):
    (tmp_path / "holiday-photos").mkdir()
    done = dnnbench(SHAPE_NET, "--data", str(tmp_path / "holiday-photos"), "--db", str(tmp_path / "r.sqlite"))
    assert done.returncode == 2
    assert "is empty" in done.stderr and "Accepted layouts" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.sqlite").exists()
