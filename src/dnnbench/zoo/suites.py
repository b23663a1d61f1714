"""Named lists of models: built-in suites and user suites from TOML or YAML files.

A suite file holds a table of suites:

    [suites.edge]                      # TOML
    description = "what we may deploy on the board"
    models = ["mobilenetv2", "shufflenet", "timm:efficientnet_b0", "timm:convnext_*"]

    suites:                            # YAML
      edge:
        description: what we may deploy on the board
        models: [mobilenetv2, shufflenet, timm:efficientnet_b0]

A model name may be an fnmatch pattern (`timm:convnext_*`, `resnet*`); it must match at least one model.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import DnnbenchError, SuiteFileError, UnknownSuiteError
from .seed import mobile_ids, seed_specs


@dataclass(frozen=True)
class Suite:
    name: str
    models: tuple[str, ...]
    description: str = ""
    source: str = "built-in"


def builtin_suites() -> dict[str, Suite]:
    paper = tuple(s.id for s in seed_specs())
    return {
        "paper": Suite("paper", paper, "the 46 architectures of Bianco et al., IEEE Access 2018"),
        "mobile": Suite("mobile", mobile_ids(), "the small ones, designed for mobile and embedded devices"),
        "quick": Suite("quick", ("squeezenet1_1", "mobilenetv2", "shufflenet", "resnet18"),
                       "four small models for a first look in a minute"),
    }


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def _parse(path: Path, text: str) -> object:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            line = int(match.group(1)) if match else len(text.splitlines()) if "end of document" in str(exc) else None
            raise SuiteFileError(str(path), line, f"not valid TOML: {exc}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            raise SuiteFileError(str(path), line, f"not valid YAML: {exc.problem}") from None
    raise SuiteFileError(str(path), None, "a suite file must end in .toml, .yaml or .yml")


def load_suite_file(path: str | Path) -> dict[str, Suite]:
    """Suites defined in `path`; every model name (or pattern) is checked against the zoo."""
    from .registry import get
    from .selection import expand

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteFileError(str(path), None, f"cannot read the suite file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SuiteFileError(str(path), None, f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                             f"{exc.start}): a suite file is TOML or YAML text") from None
    data = _parse(path, text)
    if not isinstance(data, dict) or not isinstance(data.get("suites"), dict) or not data["suites"]:
        raise SuiteFileError(str(path), None, "expected a table `suites` with one entry per suite, "
                             "e.g. [suites.edge] models = [\"mobilenetv2\"]")
    suites: dict[str, Suite] = {}
    for name, body in data["suites"].items():
        line = _line_of(text, str(name))
        if not isinstance(body, dict) or "models" not in body:
            raise SuiteFileError(str(path), line, f"suite {name!r} needs a `models` list")
        models = body["models"]
        if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
            raise SuiteFileError(str(path), _line_of(text, "models") if line is None else line,
                                 f"suite {name!r}: `models` must be a non-empty list of model names")
        unknown = set(body) - {"models", "description"}
        if unknown:
            raise SuiteFileError(str(path), line, f"suite {name!r}: unknown keys {sorted(unknown)}; "
                                 "accepted: models, description")
        for model in models:
            try:
                for matched in expand(model):
                    get(matched)
            except DnnbenchError as exc:
                raise SuiteFileError(str(path), _line_of(text, model), f"suite {name!r}: {exc}") from None
        suites[str(name)] = Suite(str(name), tuple(models), str(body.get("description", "")), str(path))
    return suites


def get_suite(name: str, suite_files: tuple[str | Path, ...] = ()) -> Suite:
    suites = builtin_suites()
    for path in suite_files:
        suites.update(load_suite_file(path))
    if name not in suites:
        from .registry import close_names

        hint = close_names(name, list(suites))
        raise UnknownSuiteError(
            f"unknown suite {name!r}; suites: {', '.join(sorted(suites))}"
            + (f" (closest: {', '.join(hint)})" if hint else "")
            + ". Define your own in a TOML or YAML file and pass it with --suite-file."
        )
    return suites[name]
