"""Offline data: Minari datasets in, one TensorDict of transitions on the training device out."""

from advrl.data.dataset import DatasetInfo, OfflineData, load_offline_data, open_minari

__all__ = ["DatasetInfo", "OfflineData", "load_offline_data", "open_minari"]
