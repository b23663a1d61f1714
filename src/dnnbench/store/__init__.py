"""Results store: typed records and the SQLite file they are committed to, cell by cell."""

from .records import STATUSES, CellKey, ResultRecord, canonical_json
from .sqlite import EXPORT_FORMATS, RUN_STATUSES, SCHEMA_VERSION, Store, StoreError, calibrations_path, records_frame

__all__ = [
    "EXPORT_FORMATS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "STATUSES",
    "CellKey",
    "ResultRecord",
    "Store",
    "StoreError",
    "calibrations_path",
    "canonical_json",
    "records_frame",
]
