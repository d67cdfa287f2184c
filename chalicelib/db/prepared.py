"""A shorter way through SQLAlchemy for the Core statements Aerie runs all the time: each is
planned once (per set of parameter names) and then run on the DBAPI cursor.

SQLAlchemy caches a statement's compilation, yet every execution still coerces the
statement, looks up its cache key, builds an execution context, processes each parameter
through several layers and wraps the cursor in a result: measured with callgrind, 16 % of
the instructions the embedded engine spends creating a VM. A :class:`Plan` keeps what every
execution of one statement shares (its SQL, the order of its parameters, the values it
carries itself, the dialect's bind and result processors, the columns' Python-side
defaults); running it fills in the values, calls the cursor and returns a real
SQLAlchemy ``Result`` (or, for a write, its row count).

Only what runs exactly as SQLAlchemy would run it takes this way: a Select, Insert, Update
or Delete of tables (not ORM entities), without RETURNING or execution options, on a
dialect with positional parameters (SQLite's and PyMySQL's), on a connection no one listens
to for events or echoes. Everything else, and any statement a plan cannot be made for, goes
through SQLAlchemy as usual.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, IteratorResult
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.schema import ColumnDefault
from sqlalchemy.sql.selectable import Select

_PLANNED = (Select, Insert, Update, Delete)


@dataclass(frozen=True, slots=True)
class Written:
    """What a write returns: how many rows it changed (SQLite: matched)."""

    rowcount: int


@dataclass(frozen=True, slots=True)
class Plan:
    sql: str
    compiled: Any  # the SQLCompiler: expands IN lists whose length each call decides
    names: tuple[str, ...]  # the parameters, in the order the SQL takes them
    carried: Mapping[str, Any]  # values the statement holds itself (literals)
    bind_processors: Mapping[str, Callable[[Any], Any]]
    defaults: tuple[tuple[str, ColumnDefault], ...]  # Python-side column defaults
    expanding: tuple[str, ...]  # the IN lists' parameters, whose lengths each call decides
    result: SimpleResultMetaData | None  # None: a write
    # By the IN lists' lengths: the SQL, its parameters in order and their processors (None:
    # SQLAlchemy expands that shape on every call, as it named the items differently).
    expansions: dict[tuple[int, ...], tuple[str, tuple[str, ...], dict] | None]

    def values(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        values = dict(self.carried)
        if params:
            values.update(params)
        for name, default in self.defaults:
            values[name] = default.arg(None) if default.is_callable else default.arg
        return values

    def arguments(self, values: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The SQL and its positional arguments for one row of values."""
        sql, names, processors = self.sql, self.names, self.bind_processors
        if self.expanding:
            sql, names, processors, values = self._expand(values)
        return sql, tuple(processors[name](values[name]) if name in processors
                          else values[name] for name in names)

    def _expand(self, values: Mapping[str, Any]):
        """The SQL for these IN lists' lengths, computed once per shape: SQLAlchemy names
        the items of list ``x`` ``x_1``, ``x_2`` …, checked against its own expansion."""
        shape = tuple(len(values[name]) for name in self.expanding)
        items = dict(values)
        for name in self.expanding:
            items.update((f"{name}_{n}", item) for n, item in enumerate(values[name], 1))
        if shape not in self.expansions:
            sql, names, processors, parameters = self._expanded_by_sqlalchemy(values)
            same = all(name in items and items[name] is parameters[name] for name in names)
            self.expansions[shape] = (sql, names, processors) if same else None
        known = self.expansions[shape]
        if known is None:
            return self._expanded_by_sqlalchemy(values)
        return (*known, items)

    def _expanded_by_sqlalchemy(self, values: Mapping[str, Any]):
        expanded = self.compiled._process_parameters_for_postcompile(dict(values))
        return (expanded.statement, tuple(expanded.positiontup),
                {**self.bind_processors, **expanded.processors}, expanded.parameters)


def _plan(statement: Executable, connection: Connection, keys: tuple[str, ...] | None,
          many: bool) -> Plan | None:
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys else None,
                                 for_executemany=many)
    if not compiled.positional or compiled.literal_execute_params \
            or compiled.implicit_returning or getattr(statement, "_returning", ()) \
            or (many and compiled.post_compile_params):
        return None
    defaults = []
    for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
        default = column.onupdate if compiled.isupdate else column.default
        if not isinstance(default, ColumnDefault) or default.is_clause_element \
                or column.key not in compiled.positiontup:
            return None
        defaults.append((column.key, default))
    result = None
    if isinstance(statement, Select):
        keys_out = [column.keyname for column in compiled._result_columns]
        if len(set(keys_out)) != len(keys_out):
            return None  # SQLAlchemy's rows would call these keys ambiguous
        result = SimpleResultMetaData(keys_out, _processors=[
            column.type._cached_result_processor(dialect, None)
            for column in compiled._result_columns])
    filled = {*(keys or ()), *(name for name, _ in defaults)}
    carried = {name: bind.effective_value for name, bind in compiled.binds.items()
               if not bind.required and bind.callable is None and name not in filled}
    expanding = tuple(sorted(compiled.bind_names[bind] for bind in compiled.post_compile_params))
    return Plan(compiled.string, compiled, tuple(compiled.positiontup), carried,
                dict(compiled._bind_processors), tuple(defaults), expanding, result, {})


# Plans by statement object, then by parameter names, one-row-or-many and dialect. A
# statement built on every call (literal values inline) is a new object each time: it is
# remembered on its first run and planned only if run again, so those keep SQLAlchemy's
# compiled cache; the ones built once (module constants) are planned on their second run.
_plans: weakref.WeakKeyDictionary[Executable, dict[tuple, Plan | None]] = \
    weakref.WeakKeyDictionary()


class PlannedSession(Session):
    """A Session whose Core statements take their :class:`Plan` where they can."""

    _held: tuple[Any, Connection] | None = None  # the transaction and its connection

    def _connection(self) -> Connection:
        """``connection()``, which walks the transaction's state on every call, once per
        transaction: a transaction keeps its connection to its end."""
        held, transaction = self._held, self._transaction
        if held is not None and held[0] is transaction and transaction.is_active:
            return held[1]
        connection = self.connection()
        self._held = (self._transaction, connection)
        return connection

    def execute(self, statement, params=None, *args, **kwargs):
        if args or kwargs or not isinstance(statement, _PLANNED) \
                or statement._propagate_attrs.get("compile_state_plugin") == "orm" \
                or statement._execution_options or self.dispatch.do_orm_execute:
            return super().execute(statement, params, *args, **kwargs)
        many = isinstance(params, list)
        if many and len(params) == 1:
            params, many = params[0], False
        self._autoflush()  # as SQLAlchemy does before any Core statement
        connection = self._connection()
        if connection._has_events or connection.engine._has_events or connection._echo:
            return super().execute(statement, params)
        first = (params[0] if many else params) or {}
        keys = None if isinstance(statement, Select) else tuple(sorted(first))
        variants = _plans.get(statement)
        if variants is None:  # its first run
            _plans[statement] = {}
            return super().execute(statement, params)
        variant = (keys, many, connection.dialect.name)
        plan = variants.get(variant, False)
        if plan is False:
            plan = variants[variant] = _plan(statement, connection, keys, many)
        if plan is None:
            return super().execute(statement, params)
        return _run(plan, connection, params, many)

    def scalar(self, statement, params=None, **kwargs):
        if kwargs:
            return super().scalar(statement, params, **kwargs)
        return self.execute(statement, params).scalar()

    def scalars(self, statement, params=None, **kwargs):
        if kwargs:
            return super().scalars(statement, params, **kwargs)
        return self.execute(statement, params).scalars()


def _run(plan: Plan, connection: Connection, params: Any, many: bool):
    cursor = connection.connection.driver_connection.cursor()
    sql, arguments = "", ()
    try:
        if many:
            rows = [plan.arguments(plan.values(row)) for row in params]
            sql = rows[0][0]
            cursor.executemany(sql, [arguments for _, arguments in rows])
        else:
            sql, arguments = plan.arguments(plan.values(params))
            cursor.execute(sql, arguments)
        if plan.result is None:
            return Written(cursor.rowcount)
        return IteratorResult(plan.result, iter(cursor.fetchall()))
    except connection.dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(sql, arguments, error,
                                      connection.dialect.loaded_dbapi.Error) from error
    finally:
        cursor.close()
