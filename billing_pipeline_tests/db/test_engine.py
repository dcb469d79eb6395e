"""One pooled engine per database URL per process."""

from __future__ import annotations

from sqlalchemy import text

from billing_pipeline.db.engine import get_engine


def test_the_same_url_gives_the_same_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    engine = get_engine(url)
    assert get_engine(url) is engine
    assert get_engine(f"sqlite:///{tmp_path / 'other.db'}") is not engine


def test_postgresql_urls_are_cached_after_normalization(postgres_server):
    url = postgres_server.create_database("engine_cache")
    assert url.startswith("postgresql")
    engine = get_engine(url)
    assert get_engine(engine.url.render_as_string(hide_password=False)) is engine  # postgresql+psycopg://
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    engine.dispose()
