"""Heads for rsforge: change masks from both dates' feature maps, and their losses."""
