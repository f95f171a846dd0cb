"""Raster I/O, tiled change detection of whole scenes, and vectorising masks."""
