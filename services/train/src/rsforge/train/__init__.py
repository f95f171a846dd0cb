"""Ray Train jobs for rsforge: `rsforge train RECIPE` and `rsforge run RECIPE`."""
