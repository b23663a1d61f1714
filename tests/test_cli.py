"""The `dnnbench` command as a user runs it."""

import csv
import json
import os
import subprocess
import sys
import tempfile

import pytest

DNNBENCH = [sys.executable, "-m", "dnnbench"]
# a bare environment, but the sources under test first on the path when the caller put them there
ENV = {"COLUMNS": "200", "PATH": "", **{k: v for k, v in os.environ.items() if k == "HF_HUB_OFFLINE"}}
if os.environ.get("PYTHONPATH"):
    ENV["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep))
# commands run in a folder of their own: `profile` keeps its counts in ./results, never in the repository's
WORKDIR = tempfile.mkdtemp(prefix="dnnbench-test-cli-")


def run(*args, check=True):
    result = subprocess.run([*DNNBENCH, *args], capture_output=True, text=True, env=ENV, cwd=WORKDIR)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_models_lists_the_paper_suite_as_csv(tmp_path):
    out = tmp_path / "models.csv"
    run("models", "--suite", "paper", "--output", str(out))
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 46
    assert {r["id"] for r in rows} >= {"alexnet", "nasnetalarge", "shufflenet", "xception"}
    table = run("models", "--family", "dpn").stdout
    assert "dpn68" in table and "resnet50" not in table


def test_profile_json_and_per_layer_csv(tmp_path):
    data = json.loads(run("profile", "ResNet-18", "timm:resnet18", "--batch-size", "2", "--format", "json").stdout)
    assert [d["model"] for d in data] == ["resnet18", "timm:resnet18"]
    assert data[0]["macs"] == data[1]["macs"] == 2 * 1_814_073_344
    assert data[0]["flops"] == 2 * data[0]["macs"]
    out = tmp_path / "layers.csv"
    run("profile", "resnet18", "--per-layer", "--sort-by", "macs", "--top", "3", "--output", str(out))
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 3 and rows[0]["path"] == "conv1"
    assert int(rows[0]["macs"]) >= int(rows[1]["macs"]) >= int(rows[2]["macs"])


def test_table_headers_say_what_is_counted():
    out = run("profile", "squeezenet1_1", "--mode", "conv-only").stdout
    assert "MACs: convolutions only" in out and "FLOPs = 2 x MACs" in out


@pytest.mark.parametrize("args, message", [
    (["profile", "resnt50"], "closest names: resnet50"),
    (["profile", "timm:resnet5O"], "timm:resnet50"),
    (["profile", "inceptionv3", "--input-size", "32"], "smallest input size that works is 75"),
    (["profile", "resnet18", "--mode", "fvcore"], "modes: standard, extended, conv-only, bianco2018"),
    (["profile", "resnet18", "--dtype", "int3"], "precisions: fp32, bf16, fp16"),
    (["models", "--suite", "papr"], "unknown suite 'papr'"),
    (["profile"], "name at least one model"),
])
def test_bad_input_exits_2_without_traceback(args, message):
    result = run(*args, check=False)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_malformed_suite_file_names_file_and_line(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[suites.x]\nmodels = ["resnet18", "nope"]\n')
    result = run("models", "--suite", "x", "--suite-file", str(bad), check=False)
    assert result.returncode == 2
    assert f"{bad}:2" in result.stderr.replace("\n", "")
