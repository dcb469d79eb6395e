"""The S3 document store resource builds one boto3 client per configuration per process."""

from billing_pipeline.clients.documents import S3DocumentStore
from billing_pipeline.defs.delivery_resources import S3DocumentStoreResource


def _resource(**overrides) -> S3DocumentStoreResource:
    config = {
        "bucket": "invoices",
        "endpoint_url": "http://127.0.0.1:1",
        "aws_access_key_id": "key",
        "aws_secret_access_key": "secret",
    }
    return S3DocumentStoreResource(**{**config, **overrides})


def test_every_store_of_one_configuration_shares_one_client():
    first, second = _resource().store(), _resource().store()
    assert isinstance(first, S3DocumentStore) and isinstance(second, S3DocumentStore)
    assert first is not second  # per-store state (token bucket, checksum fallback) stays separate
    assert first.client is second.client


def test_another_endpoint_or_key_gets_its_own_client():
    base = _resource().store().client
    assert _resource(endpoint_url="http://127.0.0.1:2").store().client is not base
    assert _resource(aws_secret_access_key="other").store().client is not base
    other_bucket = _resource(bucket="elsewhere").store()
    assert other_bucket.client is base and other_bucket.bucket == "elsewhere"
