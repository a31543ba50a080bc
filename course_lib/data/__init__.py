"""Data shipped with the course: the corpus and checkpoints (see README.md here)."""
