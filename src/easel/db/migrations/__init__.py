"""Alembic migrations for the Easel database, applied on `easel serve` start and by
`easel db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

# The revision that matches the schema the first Easel release created without Alembic.
BASELINE_REVISION = "0001"
# Any constant will do: it names the lock that makes concurrent starts migrate one at a time.
_PG_MIGRATION_LOCK = 5_471_001


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> list[str]:
    """Bring the schema to `revision` (the newest by default); the revisions applied, oldest
    first."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several servers may start at once on one database: only one migrates, the others wait.
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        config = _config(connection)
        _adopt_unversioned_schema(connection, config)
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(config, revision)
        script = ScriptDirectory.from_config(config)
        applied = [rev.revision for rev in script.iterate_revisions(revision, before)]
    return list(reversed(applied))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    return ScriptDirectory.from_config(config).get_current_head()


def _adopt_unversioned_schema(connection: Connection, config: Config) -> None:
    # Databases made before migrations existed hold the baseline tables but no version table.
    tables = set(inspect(connection).get_table_names())
    if "api_keys" in tables and "alembic_version" not in tables:
        command.stamp(config, BASELINE_REVISION)
