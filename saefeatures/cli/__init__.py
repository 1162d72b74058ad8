"""The command line: strings parsed into typed options, and all terminal rendering."""
