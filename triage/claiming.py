"""The claim fast path on PostgreSQL: two statements per "next case", no per-claim ORM object graph.

`triage.services.case_claim_next` calls this module when the database is PostgreSQL; on other databases
(SQLite, the embedded run) it uses the portable ORM path, which applies the same rules in more round trips.

Statement 1 (`read_queue`, no row locks) returns in one round trip what the claim needs to decide:
- the nurse's open case (reserved or in progress, oldest reservation first), if any;
- her routing profile in the clinic (skills lower-cased, licensed states upper-cased, as
  `triage.services.nurse_profile` reads them; none when she is not staff of the clinic);
- whether any queued case has routing requirements (`triage.routing.RESTRICTED`, for the skip ledger);
- the per-level heads of the queued cases she may take (DESIGN §5): per acuity level, the oldest unboosted
  case and the boosted case with the earliest `priority_since`, callbacks not yet due left out.

The caller ranks the heads with `triage.priority.ranked` (the same function the ORM path and the simulator
use), then statement 2 (`claim_first_free`) reserves, logs and returns the case in one round trip:

    WITH claimed AS (
        UPDATE triage_case SET state = 'reserved', ...
        WHERE id = COALESCE((SELECT id ... line 1 ... LIMIT 1 FOR UPDATE SKIP LOCKED),
                            (SELECT id ... line 2 ... LIMIT 1 FOR UPDATE SKIP LOCKED), ...)
        RETURNING ...),
    event AS (INSERT INTO triage_caseevent ... FROM claimed),
    ledger AS (INSERT INTO triage_routingledgerentry ... FROM claimed LEFT JOIN triage_queue ...)
    SELECT ... FROM claimed

A "line" is one level's unboosted or boosted cases in head order. PostgreSQL evaluates the uncorrelated
sub-selects (init plans) lazily, in argument order, and COALESCE stops at the first non-null, so exactly one
row is locked: the first unlocked case of the best-ranked line, else of the next line, as the ORM path's loop
of `select_for_update(skip_locked=True).first()` does. Concurrent claims therefore never return the same case.
The timeline entry (`CaseEvent` kind `reserved`) and the routing ledger entry (`offered`) are written by the
same statement, so a claim is all or nothing. The returned `Case` has its PHI (encrypted) columns deferred:
the claim reads no PHI, and a caller that needs one loads it on access.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from triage.models import Case, CaseEvent, CaseState, Queue, RoutingLedgerEntry
from triage.routing import NurseProfile

_CASE = Case._meta.db_table
_QUEUED = str(CaseState.QUEUED)
_OPEN = (str(CaseState.RESERVED), str(CaseState.IN_PROGRESS))


@dataclass(frozen=True)
class HeadRow:
    """A per-level head as read without locks: case id, acuity, the instant its priority accrues from
    (arrival, or `priority_since` for a boosted case) and whether it is boosted (`priority_boost_seconds > 0`)."""

    pk: int
    acuity: int
    arrived_at: datetime | None
    boosted: bool


@dataclass(frozen=True)
class QueueRead:
    """What statement 1 read: `open_case_id` (None: the nurse holds no open case), her `profile`, whether a
    queued case has routing requirements (`restricted`), and the eligible per-level `heads`."""

    open_case_id: int | None
    profile: NurseProfile
    restricted: bool
    heads: list[HeadRow]


# The nurse's skills (jsonb array) and licensed states (text[]) as statement 2 receives them.
_PARAM_SKILLS = "%(skills)s::jsonb"
_PARAM_STATES = "%(states)s::text[]"


def _eligible_queued(alias: str, *, skills: str | None, states: str | None) -> str:
    """SQL condition: `alias` is a queued case of the clinic, due, that the nurse may take (`eligibility_q`);
    `skills`/`states` are SQL expressions for her profile, None when no queued case has requirements."""
    due = (
        f"{alias}.clinic_id = %(clinic)s AND {alias}.state = %(queued)s"
        f" AND ({alias}.callback_due_at IS NULL OR {alias}.callback_due_at <= %(now)s)"
    )
    if skills is None or states is None:
        return due
    return (
        due + f" AND ({alias}.skills_relaxed_at IS NOT NULL OR {alias}.required_skills <@ {skills})"
        f" AND ({alias}.required_license_state = '' OR {alias}.required_license_state = ANY({states}))"
    )


def _line(
    alias: str,
    acuity: int,
    boosted: bool,
    *,
    select: str,
    lock: bool,
    skills: str | None = _PARAM_SKILLS,
    states: str | None = _PARAM_STATES,
) -> str:
    """One line's head query: the level's unboosted cases by arrival, or its boosted ones by `priority_since`."""
    boost = f"{alias}.priority_boost_seconds > 0" if boosted else f"{alias}.priority_boost_seconds = 0"
    order = f"{alias}.priority_since, {alias}.id" if boosted else f"{alias}.arrived_at, {alias}.id"
    where = _eligible_queued(alias, skills=skills, states=states)
    return (
        f"SELECT {select} FROM {_CASE} {alias} WHERE {where} AND {alias}.acuity = {int(acuity)}"
        f" AND {boost} ORDER BY {order} LIMIT 1" + (" FOR UPDATE SKIP LOCKED" if lock else "")
    )


def _read_sql() -> str:
    staff = "clinics_staffmember"
    heads = "\nUNION ALL\n".join(
        "("
        + _line(
            "c",
            level,
            boosted,
            select=(
                f"'head', c.id, c.acuity, {'c.priority_since' if boosted else 'c.arrived_at'},"
                f" {str(boosted).upper()}, NULL, NULL"
            ),
            lock=False,
            skills="(SELECT skills FROM me)",
            states="(SELECT states FROM me)::text[]",
        )
        + ")"
        for level in range(1, 6)
        for boosted in (False, True)
    )
    # The profile is read first (CTE `me`) and fed into the head lookups as parameters would be.
    return f"""
WITH sm AS (
    SELECT skills, licensed_states FROM {staff}
    WHERE clinic_id = %(clinic)s AND user_id = %(nurse)s ORDER BY id LIMIT 1
), me AS (
    SELECT
        COALESCE((SELECT jsonb_agg(DISTINCT lower(x)) FROM sm, jsonb_array_elements_text(sm.skills) x),
                 '[]'::jsonb) AS skills,
        ARRAY(SELECT DISTINCT upper(x) FROM sm, jsonb_array_elements_text(sm.licensed_states) x) AS states
)
SELECT 'me', NULL::bigint, NULL::int, NULL::timestamptz, NULL::boolean, me.skills::text, me.states FROM me
UNION ALL
SELECT 'open', o.id, NULL, NULL, NULL, NULL, NULL FROM (
    SELECT id FROM {_CASE} WHERE clinic_id = %(clinic)s AND reserved_by_id = %(nurse)s
    AND state = ANY(%(open)s) ORDER BY reserved_at LIMIT 1
) o
UNION ALL
SELECT 'restricted', NULL, NULL, NULL, NULL, NULL, NULL WHERE EXISTS (
    SELECT 1 FROM {_CASE} r WHERE r.clinic_id = %(clinic)s AND r.state = %(queued)s
    AND (r.callback_due_at IS NULL OR r.callback_due_at <= %(now)s)
    AND ((r.skills_relaxed_at IS NULL AND r.required_skills <> '[]'::jsonb) OR r.required_license_state <> '')
)
UNION ALL
{heads}
"""


_READ_SQL: str | None = None


# PostgreSQL types of the statements' named parameters (PREPARE declares them).
_PARAM_TYPES = {
    "clinic": "bigint",
    "nurse": "bigint",
    "now": "timestamptz",
    "expires": "timestamptz",
    "queued": "text",
    "reserved": "text",
    "open": "text[]",
    "skills": "jsonb",
    "states": "text[]",
    "event_kind": "text",
    "ledger_kind": "text",
    "summary": "text",
    "detail": "text",
    "offered_to": "text",
    "discipline": "text",
    "strict": "boolean",
    "rate1": "float8",
    "rate2": "float8",
    "rate3": "float8",
    "rate4": "float8",
    "rate5": "float8",
}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# Parameters that are code constants (states and kinds): written into the prepared statement as literals, so a
# claim does not send (and psycopg does not quote) them every time. Callers may still pass them; they are unused.
_CONSTANTS: dict[str, str | tuple[str, ...]] = {
    "queued": _QUEUED,
    "reserved": str(CaseState.RESERVED),
    "open": _OPEN,
    "event_kind": str(CaseEvent.Kind.RESERVED),
    "ledger_kind": str(RoutingLedgerEntry.Kind.OFFERED),
}


def _literal(name: str) -> str:
    """SQL literal of the constant parameter `name`, cast to its `_PARAM_TYPES` type."""
    value = _CONSTANTS[name]
    items = (value,) if isinstance(value, str) else value
    if not all(re.fullmatch(r"[a-z_]+", item) for item in items):  # plain words only: nothing to escape
        raise ValueError(f"constant parameter {name!r} is not a plain word: {value!r}")
    if isinstance(value, str):
        return f"'{value}'::{_PARAM_TYPES[name]}"
    return "ARRAY[" + ", ".join(f"'{item}'" for item in items) + f"]::{_PARAM_TYPES[name]}"


@dataclass(frozen=True)
class _Prepared:
    name: str
    prepare: str  # PREPARE name (types) AS statement-with-$n
    execute: str  # EXECUTE name(%s, ...)
    params: tuple[str, ...]


_STATEMENTS: dict[str, _Prepared] = {}
# Names prepared on each live psycopg connection (prepared statements belong to the database session).
_PREPARED_ON: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _statement(sql: str) -> _Prepared:
    found = _STATEMENTS.get(sql)
    if found is not None:
        return found
    names: list[str] = []
    text = _PLACEHOLDER.sub(lambda m: f"({_literal(m[1])})" if m[1] in _CONSTANTS else m[0], sql)
    for match in _PLACEHOLDER.finditer(text):
        if match[1] not in names:
            names.append(match[1])
    positional = _PLACEHOLDER.sub(lambda m: f"${names.index(m[1]) + 1}", text)
    name = "careline_claim_" + hashlib.sha1(positional.encode(), usedforsecurity=False).hexdigest()[:16]
    types = ", ".join(_PARAM_TYPES[n] for n in names)
    statement = _Prepared(
        name=name,
        prepare=f"PREPARE {name} ({types}) AS {positional}",
        execute=f"EXECUTE {name}({', '.join(['%s'] * len(names))})",
        params=tuple(names),
    )
    _STATEMENTS[sql] = statement
    return statement


def _run(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Execute `sql` (named `%(name)s` parameters, typed in `_PARAM_TYPES`) inside the current transaction
    as a PostgreSQL prepared statement, and return its rows.

    Why: Django's cursor binds parameters on the client, so every claim's timestamps make a new statement
    text that PostgreSQL plans again (~5 ms for these statements on a busy 2-vCPU machine, more than running
    them), and psycopg re-parses statements longer than 4 kB on every call. `PREPARE` once per database
    session, then a short `EXECUTE name(...)`: planned once, parsed once. Prepared statements outlive a
    rollback; a connection pooler in transaction mode (pgbouncer) would need `max_prepared_statements`.
    """
    statement = _statement(sql)
    with connection.cursor() as cursor:
        raw = connection.connection
        with _LOCK:
            prepared = _PREPARED_ON.setdefault(raw, set())
        if statement.name not in prepared:
            cursor.execute(statement.prepare)
            prepared.add(statement.name)
        cursor.execute(statement.execute, [params[name] for name in statement.params])
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows


def read_queue(*, clinic_id: int, nurse_id: int, now: datetime) -> QueueRead:
    """Statement 1 (see the module docstring): one round trip, no locks. PostgreSQL only."""
    global _READ_SQL
    if _READ_SQL is None:
        _READ_SQL = _read_sql()
    params: dict[str, Any] = {
        "clinic": clinic_id,
        "nurse": nurse_id,
        "now": now,
        "queued": _QUEUED,
        "open": list(_OPEN),
    }
    open_case_id: int | None = None
    restricted = False
    skills: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    heads: list[HeadRow] = []
    for kind, pk, acuity, since, boosted, me_skills, me_states in _run(_READ_SQL, params):
        if kind == "me":
            skills = frozenset(json.loads(me_skills))
            states = frozenset(me_states or [])
        elif kind == "open":
            open_case_id = pk
        elif kind == "restricted":
            restricted = True
        else:
            heads.append(HeadRow(pk=pk, acuity=acuity, arrived_at=since, boosted=bool(boosted)))
    return QueueRead(
        open_case_id=open_case_id,
        profile=NurseProfile(skills=skills, licensed_states=states),
        restricted=restricted,
        heads=heads,
    )


def _case_columns() -> list[Any]:
    """Case's concrete fields the claim returns: every one but the encrypted (PHI) columns."""
    from clinics.crypto import EncryptedFieldMixin

    return [f for f in Case._meta.concrete_fields if not isinstance(f, EncryptedFieldMixin)]


# (attname, column expression, converters) of each returned column, in `_case_columns` order.
_CONVERTERS: list[tuple[str, Any, list[Any]]] | None = None
_CLAIM_SQL: dict[tuple[tuple[int, bool], ...], str] = {}


def _sealed_event(*, summary: str, discipline: str) -> dict[str, str]:
    """The `reserved` timeline entry's summary and detail, encrypted here as `CaseEvent`'s fields store them
    (`clinics.crypto`: the SQL writes the columns directly, so it must write ciphertext). The wait is not in
    the detail (it is only known inside the statement): the `offered` ledger entry's reason carries it."""
    summary_field = CaseEvent._meta.get_field("summary")
    detail_field = CaseEvent._meta.get_field("detail")
    return {
        "summary": summary_field.get_db_prep_value(summary[:500], connection),
        "detail": detail_field.get_db_prep_value({"discipline": discipline}, connection),
    }


def _reserve_ctes(picks: str, returning: str) -> str:
    """The CTEs both claim statements end with: `claimed` (reserve the first of `picks`, an SQL list of
    candidate ids, that COALESCE finds; `returning` the case columns), `event` (its `reserved` timeline entry,
    sealed by `_sealed_event`) and `ledger` (its `offered` entry, the reason ending with the wait in seconds
    and the queue)."""
    wait = "trunc(extract(epoch FROM (%(now)s::timestamptz - claimed.arrived_at)))::bigint"
    return f"""claimed AS (
    UPDATE {_CASE} SET state = %(reserved)s, reserved_by_id = %(nurse)s, reserved_at = %(now)s,
        reservation_expires_at = %(expires)s
    WHERE {_CASE}.id = COALESCE(
        {picks})
    RETURNING {returning}
), event AS (
    INSERT INTO {CaseEvent._meta.db_table} (case_id, clinic_id, kind, at, actor_id, summary, detail)
    SELECT claimed.id, claimed.clinic_id, %(event_kind)s, %(now)s, %(nurse)s, %(summary)s, %(detail)s
    FROM claimed
), ledger AS (
    INSERT INTO {RoutingLedgerEntry._meta.db_table} (case_id, clinic_id, at, kind, nurse_id, reason)
    SELECT claimed.id, claimed.clinic_id, %(now)s, %(ledger_kind)s, %(nurse)s,
        left(%(offered_to)s::text || COALESCE({wait}, 0)::text || ' s' || COALESCE(' in ' || q.name, ''), 500)
    FROM claimed LEFT JOIN {Queue._meta.db_table} q ON q.id = claimed.queue_id
)"""


def _claim_sql(lines: tuple[tuple[int, bool], ...]) -> str:
    sql = _CLAIM_SQL.get(lines)
    if sql is not None:
        return sql
    fields = _case_columns()
    returning = ", ".join(f"{_CASE}.{f.column}" for f in fields)
    columns = ", ".join(f"claimed.{f.column}" for f in fields)
    pick = ",\n            ".join(
        "(" + _line("c", acuity, boosted, select="c.id", lock=True) + ")" for acuity, boosted in lines
    )
    sql = f"""
WITH {_reserve_ctes(pick, returning)}
SELECT {columns} FROM claimed
"""
    _CLAIM_SQL[lines] = sql
    return sql


def claim_first_free(
    *,
    lines: list[tuple[int, bool]],
    clinic_id: int,
    nurse_id: int,
    profile: NurseProfile,
    now: datetime,
    expires: datetime,
    summary: str,
    offered_to: str,
    discipline: str,
) -> Case | None:
    """Statement 2 (see the module docstring): reserve the first unlocked case of the first line of `lines`
    that has one, write its `reserved` timeline entry and `offered` ledger entry, and return it.

    `lines`: (acuity, boosted) pairs best first. `now`/`expires`: reservation instant and expiry (aware).
    `summary`: the timeline line ("Reserved by ..."); `offered_to`: the ledger reason's start ("Offered to
    ... after "), the statement appends "<wait> s" and " in <queue name>". `discipline`: the queue
    discipline's name for the timeline detail. Returns None when every eligible case is locked or taken.
    Must run inside a transaction (the locks last until it commits). PostgreSQL only.
    """
    if not lines:
        return None
    params: dict[str, Any] = {
        "clinic": clinic_id,
        "nurse": nurse_id,
        "now": now,
        "expires": expires,
        "queued": _QUEUED,
        "reserved": str(CaseState.RESERVED),
        "skills": json.dumps(sorted(profile.skills)),
        "states": sorted(profile.licensed_states),
        "event_kind": str(CaseEvent.Kind.RESERVED),
        "ledger_kind": str(RoutingLedgerEntry.Kind.OFFERED),
        **_sealed_event(summary=summary, discipline=discipline),
        "offered_to": offered_to,
    }
    rows = _run(_claim_sql(tuple(lines)), params)
    if not rows:
        return None
    return _case_from_row(rows[0])


def _case_from_row(row: tuple[Any, ...]) -> Case:
    """A `Case` from the claim statement's returned columns (`_case_columns`), PHI columns deferred."""
    global _CONVERTERS
    if _CONVERTERS is None:
        _CONVERTERS = []
        for field in _case_columns():
            column = field.get_col(_CASE)
            convert = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            _CONVERTERS.append((field.attname, column, convert))
    values = []
    for (_, column, converters), value in zip(_CONVERTERS, row, strict=True):
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    return Case.from_db(connection.alias, [attname for attname, _, _ in _CONVERTERS], values)


# --- one statement: rank, lock, reserve and log (the common case) ---------------------------------------------

_LINES: tuple[tuple[int, bool], ...] = tuple((level, boosted) for level in range(1, 6) for boosted in (False, True))


@dataclass(frozen=True)
class OneStatementClaim:
    """What `claim_in_one_statement` did: `case` (None: nothing claimed), and `needs_full_path` (True when the
    nurse holds an open case or a queued case has routing requirements: the statement then claims nothing and
    the caller runs the two-statement path, which handles both)."""

    case: Case | None
    needs_full_path: bool


def _one_statement_sql() -> str:
    fields = _case_columns()
    returning = ", ".join(f"{_CASE}.{f.column}" for f in fields)
    columns = ", ".join(f"claimed.{f.column}" for f in fields)
    nulls = ", ".join("NULL" for _ in fields)
    heads = "\n    UNION ALL\n".join(
        f"SELECT {i} AS line, {acuity} AS acuity, %(rate{acuity})s AS rate, ("
        + _line(
            "h",
            acuity,
            boosted,
            select="h.priority_since" if boosted else "h.arrived_at",
            lock=False,
            skills=None,  # no queued case has requirements: every queued case is eligible
            states=None,
        )
        + ") AS since"
        for i, (acuity, boosted) in enumerate(_LINES, start=1)
    )

    def pick(rank: int) -> str:
        branches = " ".join(
            f"WHEN {i} THEN (" + _line("c", acuity, boosted, select="c.id", lock=True, skills=None, states=None) + ")"
            for i, (acuity, boosted) in enumerate(_LINES, start=1)
        )
        return f"CASE (SELECT line FROM ranked WHERE rn = {rank}) {branches} END"

    picks = ",\n        ".join(pick(rank) for rank in range(1, len(_LINES) + 1))
    return f"""
WITH flags AS (
    SELECT
        EXISTS (SELECT 1 FROM {_CASE} o WHERE o.clinic_id = %(clinic)s AND o.reserved_by_id = %(nurse)s
                AND o.state = ANY(%(open)s)) AS has_open,
        EXISTS (SELECT 1 FROM {_CASE} r WHERE r.clinic_id = %(clinic)s AND r.state = %(queued)s
                AND (r.callback_due_at IS NULL OR r.callback_due_at <= %(now)s)
                AND ((r.skills_relaxed_at IS NULL AND r.required_skills <> '[]'::jsonb)
                     OR r.required_license_state <> '')) AS restricted
), heads AS (
    {heads}
), ranked AS (
    SELECT heads.line, row_number() OVER (
        ORDER BY
            CASE WHEN %(strict)s THEN 0::float8
                 WHEN heads.rate = 'Infinity'::float8 THEN 'Infinity'::float8
                 ELSE heads.rate * greatest(extract(epoch FROM (%(now)s::timestamptz - heads.since))::float8, 0)
            END DESC,
            heads.acuity, heads.since
    ) AS rn
    FROM heads, flags
    WHERE heads.since IS NOT NULL AND NOT flags.has_open AND NOT flags.restricted
), {_reserve_ctes(picks, returning)}
SELECT FALSE, {columns} FROM claimed
UNION ALL
SELECT TRUE, {nulls} FROM flags WHERE flags.has_open OR flags.restricted
"""


_ONE_STATEMENT_SQL: str | None = None


def claim_in_one_statement(
    *,
    clinic_id: int,
    nurse_id: int,
    now: datetime,
    expires: datetime,
    rates: dict[int, float],
    strict: bool,
    summary: str,
    offered_to: str,
    discipline: str,
) -> OneStatementClaim:
    """The whole claim in one statement, when the nurse holds no open case and no queued case has routing
    requirements (then every queued case is eligible for every nurse, so no profile is needed).

    Reads the ten line heads without locks, ranks them in SQL exactly as `triage.priority.ranked` does for
    `accumulating` (`b_k * max(wait, 0)` best first, an infinite rate first of all, ties to the more urgent
    level then the older case) or `strict` (level, then age), then for rank 1, 2, ... locks the first free
    case of that line (`CASE` on the rank picks one `FOR UPDATE SKIP LOCKED` sub-select; `COALESCE` stops
    at the first hit, so one row is locked), reserves it and writes its timeline and ledger rows.
    `rates`: level -> b_k (1/s, `math.inf` allowed); other arguments as in `claim_first_free`. Being one
    statement, it is atomic without an explicit transaction (autocommit). PostgreSQL only.
    """
    global _ONE_STATEMENT_SQL
    if _ONE_STATEMENT_SQL is None:
        _ONE_STATEMENT_SQL = _one_statement_sql()
    params: dict[str, Any] = {
        "clinic": clinic_id,
        "nurse": nurse_id,
        "now": now,
        "expires": expires,
        "queued": _QUEUED,
        "open": list(_OPEN),
        "reserved": str(CaseState.RESERVED),
        "event_kind": str(CaseEvent.Kind.RESERVED),
        "ledger_kind": str(RoutingLedgerEntry.Kind.OFFERED),
        **_sealed_event(summary=summary, discipline=discipline),
        "offered_to": offered_to,
        "strict": strict,
        **{f"rate{level}": float(rates[level]) for level in range(1, 6)},
    }
    rows = _run(_ONE_STATEMENT_SQL, params)
    if not rows:
        return OneStatementClaim(case=None, needs_full_path=False)
    if rows[0][0]:
        return OneStatementClaim(case=None, needs_full_path=True)
    return OneStatementClaim(case=_case_from_row(rows[0][1:]), needs_full_path=False)
