"""saefeatures: emotion directions and SAE features in open language models."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("saefeatures")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+checkout"

__all__ = ["__version__", "open"]


def __getattr__(name: str) -> Any:
    """`saefeatures.open` (docs/api.md) loads the store's code on first use, so that
    `import saefeatures` stays light."""
    if name == "open":
        from saefeatures.api import open

        return open
    raise AttributeError(f"module 'saefeatures' has no attribute {name!r}")
