"""Heads for rsforge: change masks (multi-scale, text-guided, from bridged tokens), scene classes, their losses."""
