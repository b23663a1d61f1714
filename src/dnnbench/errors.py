"""Errors a user can act on.

Every error raised for bad input derives from DnnbenchError; the CLI prints its message without a
traceback and exits with its exit_code (2 for bad input, as argument parsers do).
"""

from __future__ import annotations


class DnnbenchError(Exception):
    exit_code = 1


class UsageError(DnnbenchError):
    exit_code = 2


class UnknownModelError(UsageError, LookupError):
    def __init__(self, name: str, suggestions: list[str] | tuple[str, ...] = (), where: str = "the model zoo"):
        self.name = name
        self.suggestions = tuple(suggestions)
        message = f"unknown model {name!r} in {where}"
        if self.suggestions:
            message += "; closest names: " + ", ".join(self.suggestions)
        message += ". `dnnbench models` lists the zoo; any timm or torchvision classifier works as timm:NAME or torchvision:NAME."
        super().__init__(message)


class UnknownSuiteError(UsageError, LookupError):
    pass


class InputSizeError(UsageError):
    pass


class SuiteFileError(UsageError):
    def __init__(self, path: str, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
