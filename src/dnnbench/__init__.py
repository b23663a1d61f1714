"""dnnbench: benchmark image-recognition networks on your own hardware.

The flow is zoo -> measure -> store -> analysis -> report; each stage is a subpackage.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("dnnbench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
