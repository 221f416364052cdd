"""Raw loaders -> interactions -> splits -> tasks -> the LightningDataModule."""

from metarec.data.schema import STATES, DataError, FeatureTable, RecDataset, UserRatings

__all__ = ["STATES", "DataError", "FeatureTable", "RecDataset", "UserRatings"]
