"""Reads a database's schema back (tables, columns, keys, indexes) in one shape for both dialects."""

from __future__ import annotations

from typing import Any

from workflow_db import Database

_PG_ON_DELETE = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}

_PG_COLUMNS = """
    SELECT table_name, column_name, is_nullable = 'NO'
    FROM information_schema.columns
    WHERE table_schema = current_schema()
    ORDER BY table_name, ordinal_position"""
_PG_PRIMARY_KEYS = """
    SELECT c.conrelid::regclass::text, a.attname
    FROM pg_constraint c
    CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
    WHERE c.contype = 'p' AND c.connamespace = current_schema()::regnamespace
    ORDER BY 1, k.n"""
_PG_FOREIGN_KEYS = """
    SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, c.confdeltype::text,
           array_agg(a.attname ORDER BY k.n), array_agg(f.attname ORDER BY k.n)
    FROM pg_constraint c
    CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(attnum, fattnum, n)
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
    JOIN pg_attribute f ON f.attrelid = c.confrelid AND f.attnum = k.fattnum
    WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace
    GROUP BY c.oid, 1, 2, 3"""
_PG_INDEXES = """
    SELECT t.relname, i.relname, a.attname, (ix.indoption[k.n - 1] & 1) = 1
    FROM pg_index ix
    JOIN pg_class i ON i.oid = ix.indexrelid
    JOIN pg_class t ON t.oid = ix.indrelid
    CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
    WHERE t.relnamespace = current_schema()::regnamespace AND NOT ix.indisprimary
    ORDER BY 1, 2, k.n"""


def _empty() -> dict[str, Any]:
    return {
        "columns": [],
        "not_null": set(),
        "primary_key": [],
        "foreign_keys": set(),
        "indexes": {},
    }


def describe(db: Database) -> dict[str, dict[str, Any]]:
    """{table: {columns, not_null, primary_key, foreign_keys, indexes}} for ``db``."""
    with db.reading() as session:
        return _describe_sqlite(session) if db.dialect == "sqlite" else _describe_postgresql(session)


def _describe_sqlite(session: Any) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    names = session.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
    for (table,) in names:
        info = tables[table] = _empty()
        columns = session.all(f"PRAGMA table_info({table})")
        info["columns"] = [c[1] for c in columns]
        info["not_null"] = {c[1] for c in columns if c[3] or c[5]}
        info["primary_key"] = [c[1] for c in sorted((c for c in columns if c[5]), key=lambda c: c[5])]
        keys: dict[int, list[Any]] = {}
        for fk_id, _seq, ref_table, column, ref_column, _upd, on_delete, _m in session.all(
            f"PRAGMA foreign_key_list({table})"
        ):
            keys.setdefault(fk_id, [ref_table, on_delete, [], []])
            keys[fk_id][2].append(column)
            keys[fk_id][3].append(ref_column)
        info["foreign_keys"] = {(tuple(c), r, tuple(rc), d) for r, d, c, rc in keys.values()}
        for _seq, index, _unique, origin, _partial in session.all(f"PRAGMA index_list({table})"):
            if origin == "c":
                parts = session.all(f"PRAGMA index_xinfo({index})")
                info["indexes"][index] = [(p[2], bool(p[3])) for p in parts if p[5]]
    return tables


def _describe_postgresql(session: Any) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for table, column, not_null in session.all(_PG_COLUMNS):
        info = tables.setdefault(table, _empty())
        info["columns"].append(column)
        if not_null:
            info["not_null"].add(column)
    for table, column in session.all(_PG_PRIMARY_KEYS):
        tables[table]["primary_key"].append(column)
    for table, ref_table, on_delete, columns, ref_columns in session.all(_PG_FOREIGN_KEYS):
        tables[table]["foreign_keys"].add(
            (tuple(columns), ref_table, tuple(ref_columns), _PG_ON_DELETE[on_delete])
        )
    for table, index, column, descending in session.all(_PG_INDEXES):
        tables[table]["indexes"].setdefault(index, []).append((column, descending))
    return tables
