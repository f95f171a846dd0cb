"""Dataset readers of the public releases, the synthetic generator, and the torch dataset."""
