"""Raw files -> the in-memory dataset -> splits -> tasks -> the LightningDataModule; the
datasets themselves (their files, settings, tasks and paper rows) are :mod:`metarec.datasets`."""
