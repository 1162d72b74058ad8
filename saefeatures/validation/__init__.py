"""The source study's validation experiments, at the direction and the feature level."""
