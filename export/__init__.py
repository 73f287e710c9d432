"""Turn trained torch models into device artifacts (ONNX, TensorRT engines, GGUF) and verify them.

The top layer: may import `trainer`, `edge` and `firmware_config`; nothing imports it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sitehawk")
except PackageNotFoundError:  # running from a source tree that was never pip-installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
