"""Local servers for integration tests and benchmarks (PostgreSQL, S3, Stripe-compatible, SMTP).

Each is a plain class with start()/stop() that also works as a context manager:

    from billing_pipeline_tests.support import PostgresServer, S3Server, StripeServer, SMTPServer

``python -m billing_pipeline_tests.support [pg] [s3] [stripe] [smtp]`` starts them and prints
their connection settings as JSON until interrupted.
"""

from .postgres import PostgresNotInstalled, PostgresServer
from .s3 import S3Server, SeaweedNotInstalled
from .smtp import ReceivedMessage, SMTPServer
from .stripe_server import StripeServer

__all__ = [
    "PostgresServer",
    "PostgresNotInstalled",
    "S3Server",
    "SeaweedNotInstalled",
    "StripeServer",
    "SMTPServer",
    "ReceivedMessage",
]
