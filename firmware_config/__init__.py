"""What a SiteHawk device is told: DeviceConfig schema, model/OTA manifests, signing, bundles.

The lowest layer: imports nothing from `edge`, `trainer` or `export`, and runs on Python 3.10.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sitehawk")
except PackageNotFoundError:  # running from a source tree that was never pip-installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
