"""Global configs: query, update (validated against the definition), reset."""
from __future__ import annotations

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr
from sqlalchemy import select

from chalicelib.api.crud import ListRequest
from chalicelib.api.operation import Operation
from chalicelib.api.request import ApiRequest
from chalicelib.context import Context
from chalicelib.db.models import GlobalConfig
from chalicelib.globalconfig import reset_config, update_config
from chalicelib.globalconfig.service import config_row, definition_of

TAG = "global config"
PATH = "/v1/global-configurations/{category}/{name}"


class ConfigKeyRequest(ApiRequest):
    category: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)


class UpdateGlobalConfigRequest(ConfigKeyRequest):
    value: StrictStr | StrictInt | StrictFloat | StrictBool


def _list(ctx: Context, request: ListRequest) -> list[GlobalConfig]:
    stmt = select(GlobalConfig).order_by(GlobalConfig.category, GlobalConfig.name)
    return list(ctx.session.scalars(stmt.offset(request.start).limit(request.limit)))


def _update(ctx: Context, request: UpdateGlobalConfigRequest) -> GlobalConfig:
    value = request.value
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return update_config(ctx.session, request.category, request.name, text)


OPERATIONS = [
    Operation("QueryGlobalConfig", "GET", "/v1/global-configurations", ListRequest, _list,
              "List global configs with their values and defaults", resource="GlobalConfig",
              returns_list=True, query_params=("limit", "start"), tags=(TAG,)),
    Operation("GetGlobalConfig", "GET", PATH, ConfigKeyRequest,
              lambda ctx, r: config_row(ctx.session, definition_of(r.category, r.name)),
              "Get one global config", resource="GlobalConfig", tags=(TAG,)),
    Operation("UpdateGlobalConfig", "PUT", PATH, UpdateGlobalConfigRequest, _update,
              "Set a global config; the value is checked against its type and bounds",
              asynchronous=True, admin_only=True, resource="GlobalConfig", tags=(TAG,)),
    Operation("ResetGlobalConfig", "PUT", f"{PATH}/actions/reset", ConfigKeyRequest,
              lambda ctx, r: reset_config(ctx.session, r.category, r.name),
              "Put a global config back to its default", asynchronous=True, admin_only=True,
              resource="GlobalConfig", tags=(TAG,)),
]
