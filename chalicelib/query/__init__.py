"""The query API: every resource queryable by any field, through any relationship path.

- ``query(ctx, Model, QuerySpec(conditions=("cluster.name=c1",), ...))`` runs a query as the
  API does (ownership from ``ctx.caller``) and returns the reply body;
- ``compile_query(Model, spec, caller)`` gives the statements without running them;
- ``add_join(FromModel, "name", ToModel, on=lambda src, dst: ...)`` adds a join the ORM lacks;
- ``query_metadata(operations)`` describes every queryable kind for clients (the CLI).
"""
from chalicelib.query.conditions import OPERATORS, TAG_FIELDS, Condition, parse_condition
from chalicelib.query.engine import DEFAULT_LIMIT, MAX_LIMIT, Plan, QuerySpec, compile_query, query
from chalicelib.query.graph import add_join, fields_of, joins_of, remove_join
from chalicelib.query.metadata import query_metadata

__all__ = [
    "DEFAULT_LIMIT", "MAX_LIMIT", "OPERATORS", "TAG_FIELDS", "Condition", "Plan", "QuerySpec",
    "add_join", "compile_query", "fields_of", "joins_of", "parse_condition", "query",
    "query_metadata", "remove_join",
]
