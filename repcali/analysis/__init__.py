"""Analyses of finished runs (``python -m repcali.analysis.<name> <run dir>``)."""
