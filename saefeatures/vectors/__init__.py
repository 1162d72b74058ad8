"""Emotion contrast vectors and their geometry."""
