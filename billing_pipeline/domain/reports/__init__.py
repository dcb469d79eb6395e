"""Finance reports, computed from plain rows: AR aging (``aging``) and MRR/ARR (``mrr``).

Pure: no database, no clock (every report takes its ``as_of``), amounts exact ``Decimal`` per
currency and never added across currencies.
"""

from .aging import AGING_BUCKETS, AgingInvoice, AgingReport, aging_bucket, ar_aging, days_past_due
from .mrr import (
    MOVEMENTS,
    InvoicedLine,
    MrrReport,
    MrrSubscription,
    ReportInconsistent,
    monthly_recurring,
    mrr_report,
)

__all__ = [
    "AGING_BUCKETS",
    "MOVEMENTS",
    "AgingInvoice",
    "AgingReport",
    "InvoicedLine",
    "MrrReport",
    "MrrSubscription",
    "ReportInconsistent",
    "aging_bucket",
    "ar_aging",
    "days_past_due",
    "monthly_recurring",
    "mrr_report",
]
