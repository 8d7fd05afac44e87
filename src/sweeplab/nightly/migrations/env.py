"""Alembic environment of the nightly history store.

sweeplab runs migrations itself (``HistoryStore.upgrade``) on a connection it passes in
``config.attributes["connection"]``; for writing a new revision by hand use alembic.ini here:
    alembic -c src/sweeplab/nightly/migrations/alembic.ini -x url=sqlite:///nightly.db revision -m "..."
"""

from alembic import context
from sqlalchemy import create_engine

from sweeplab.nightly.history import VERSION_TABLE, Base, resolve_url


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    with create_engine(resolve_url(url)).connect() as conn:
        run(conn)
        conn.commit()
