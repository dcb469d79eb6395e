"""Finance reports, computed from plain rows: AR aging (``aging``), MRR/ARR (``mrr``) and daily
analytics (``analytics``).

Pure: no database, no clock (every report takes its ``as_of``), amounts exact ``Decimal`` per
currency and never added across currencies.
"""

from .aging import AGING_BUCKETS, AgingInvoice, AgingReport, aging_bucket, ar_aging, days_past_due
from .analytics import CurrencyDay, DailyAnalytics, WeeklyBI, daily_analytics, weekly_bi
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
    "CurrencyDay",
    "DailyAnalytics",
    "AgingReport",
    "InvoicedLine",
    "MrrReport",
    "MrrSubscription",
    "ReportInconsistent",
    "WeeklyBI",
    "aging_bucket",
    "ar_aging",
    "daily_analytics",
    "days_past_due",
    "monthly_recurring",
    "mrr_report",
    "weekly_bi",
]
