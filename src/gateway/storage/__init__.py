"""Where the gateway keeps what must survive a restart: one SQLAlchemy database and its migrations."""

from gateway.storage.database import DEFAULT_DATABASE_URL, Database

__all__ = ["DEFAULT_DATABASE_URL", "Database"]
