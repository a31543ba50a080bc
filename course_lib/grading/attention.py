"""Module 03 graders (scaled dot-product attention)."""
