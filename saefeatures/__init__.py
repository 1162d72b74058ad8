"""saefeatures: emotion directions and SAE features in open language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("saefeatures")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+checkout"
