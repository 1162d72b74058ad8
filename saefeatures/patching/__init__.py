"""Activation patching of good- and bad-news prompts: sweeps, attribution, conclusions."""
