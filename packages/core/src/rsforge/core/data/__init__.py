"""Data: one sample schema for every task, readers of public layouts, the synthetic generator."""
