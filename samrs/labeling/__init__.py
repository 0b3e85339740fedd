"""Labelers (box_fill, polygon_fill, SAM), the subset writer and label-quality evaluation."""
