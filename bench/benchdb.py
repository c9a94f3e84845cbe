"""The scratch PostgreSQL database a benchmark runs in: dropped and created anew for every run, so no run
depends on what an earlier run (or another branch's migrations) left behind."""

from __future__ import annotations

import psycopg


def fresh_database(url: str) -> None:
    """Drop (ending its sessions) and create the database named at the end of `url` (postgres://.../NAME)."""
    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
