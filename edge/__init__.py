"""SiteHawk's on-device runtime. Never imports torch: it runs on a bare Jetson."""

from importlib import metadata

try:
    __version__ = metadata.version("sitehawk")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
