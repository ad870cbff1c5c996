"""The public API end to end: SessionManager on a real PostgreSQL through the direct backend."""
