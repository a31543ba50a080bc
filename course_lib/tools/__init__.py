"""Tooling behind the ``course`` command: slides, nbgrader, grading notebooks, benchmarks, doctor."""
