"""The HTML report, built from the store alone: the page and one module per section."""
