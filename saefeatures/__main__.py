"""`python -m saefeatures` runs the CLI."""

from saefeatures.cli import main

main()
