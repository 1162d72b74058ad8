"""`python -m saefeatures` runs the CLI."""

from saefeatures.cli.app import main

main()
