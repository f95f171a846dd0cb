"""Published checkpoints -> rsforge model folders (`rsforge convert`)."""
