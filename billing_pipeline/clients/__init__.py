"""Side-effect clients, each a small Protocol with a real and a local implementation.

* ``documents`` -- ``DocumentStore``: ``S3DocumentStore`` | ``LocalDocumentStore``
* ``payments``  -- ``PaymentGateway``: ``StripeGateway`` | ``NullGateway``
* ``mailer``    -- ``Mailer``: ``SMTPMailer`` | ``OutboxMailer``
* ``errors``    -- ``DeliveryError`` hierarchy: ``.transient`` tells orchestration whether to retry
* ``redaction`` -- the one redactor of secrets in error texts
* ``files``     -- the one write-once (and atomic-replace) file helper
* ``rate_limit`` -- ``TokenBucket``: a vendor's request rate, enforced by its client

No Dagster imports here; resources wrap these.
"""
