"""Usage-event import: reader (files), classifier (classify), batches, parser process, pipeline.

``import_events`` is the entry point; SQL lives in ``db.event_writers`` / ``db.event_copy``.
"""

from billing_pipeline.ingest.files import EventFileError, EventFormat
from billing_pipeline.ingest.parse_process import ParserProcessError
from billing_pipeline.ingest.pipeline import ImportFailed, ImportSummary, import_events

__all__ = ["EventFileError", "EventFormat", "ImportFailed", "ImportSummary", "ParserProcessError", "import_events"]
