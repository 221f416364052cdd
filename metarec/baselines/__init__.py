"""Baselines evaluated on the same tasks and with the same metrics as the meta-learners."""
