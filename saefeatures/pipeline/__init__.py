"""The main job (`saefeatures run`): its stages, their content keys and skipping."""
