"""Side-effect clients, each a small Protocol with a real and a local implementation.

* ``documents`` -- ``DocumentStore``: ``S3DocumentStore`` | ``LocalDocumentStore``
* ``payments``  -- ``PaymentGateway``: ``StripeGateway`` | ``NullGateway``
* ``mailer``    -- ``Mailer``: ``SMTPMailer`` | ``OutboxMailer``
* ``errors``    -- ``DeliveryError`` hierarchy: ``.transient`` tells orchestration whether to retry

No Dagster imports here; resources wrap these.
"""
