"""Raw loaders -> interactions -> splits -> tasks -> the LightningDataModule."""

from metarec.data.schema import STATES, FeatureTable, RecDataset, UserRatings
from metarec.errors import DataError

__all__ = ["STATES", "DataError", "FeatureTable", "RecDataset", "UserRatings"]
