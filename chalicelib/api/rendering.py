"""What an operation returns, as the JSON a client reads."""
from __future__ import annotations

from typing import Any

from chalicelib.db.base import Base
from chalicelib.db.inventory import to_inventory


def render_result(result: Any) -> Any:
    """An inventory for a resource, a list of inventories for a list, plain data as is."""
    if isinstance(result, Base):
        return to_inventory(result)
    if isinstance(result, list):
        return [render_result(item) for item in result]
    return result


def render_reply(result: Any) -> dict:
    rendered = render_result(result)
    if isinstance(result, Base):
        return {"inventory": rendered}
    if isinstance(result, list):
        return {"inventories": rendered}
    return rendered if isinstance(rendered, dict) else {"result": rendered}
