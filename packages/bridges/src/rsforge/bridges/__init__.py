"""Bridges for rsforge: fuse the two dates and project visual tokens to the decoder's width."""
