"""Structured configs (``metarec.config.schema``) and their loading (``metarec.config.load``)."""
