"""Text the suite reads: emotion words, ratings, passages, prompt files, training text."""
