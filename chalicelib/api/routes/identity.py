"""Accounts, users and sessions."""
from __future__ import annotations

from typing import Literal

from chalicelib.api.crud import (
    QUERY_PARAMS,
    QueryRequest,
    UpdateRequest,
    UuidRequest,
    resource_operations,
)
from chalicelib.api.operation import Operation
from chalicelib.api.request import ApiRequest, CreateRequest, Description, Name, Password, Uuid
from chalicelib.context import Context
from chalicelib.db.inventory import wire_value
from chalicelib.db.models import Account, User
from chalicelib.errors import NotFound
from chalicelib.identity import accounts, sessions
from chalicelib.query import query

TAG = "identity"


class LogInByAccountRequest(ApiRequest):
    account_name: Name
    password: Password


class LogInByUserRequest(ApiRequest):
    account_name: Name
    user_name: Name
    password: Password


class LogOutRequest(ApiRequest):
    session_uuid: Uuid


class CreateAccountRequest(CreateRequest):
    name: Name
    password: Password
    type: Literal["Normal", "SystemAdmin"] = "Normal"
    description: Description | None = None


class UpdateWithPasswordRequest(UpdateRequest):
    password: Password | None = None


class CreateUserRequest(CreateRequest):
    name: Name
    password: Password
    description: Description | None = None


def _session_reply(result: sessions.LoginResult) -> dict:
    session = result.session
    return {"inventory": {
        "uuid": session.uuid, "token": result.token, "accountUuid": session.account_uuid,
        "userUuid": session.user_uuid, "expiredDate": wire_value(session.expired_date),
        "createDate": wire_value(session.create_date),
    }}


def _log_out(ctx: Context, request: LogOutRequest) -> dict:
    if request.session_uuid != ctx.caller.session_uuid and not ctx.caller.is_admin:
        raise NotFound(f"Session {request.session_uuid} does not exist",
                       details={"uuid": request.session_uuid})
    sessions.logout(ctx.session, request.session_uuid)
    return {}


OPERATIONS = [
    Operation("LogInByAccount", "PUT", "/v1/accounts/login", LogInByAccountRequest,
              lambda ctx, r: _session_reply(sessions.login_by_account(
                  ctx.session, r.account_name, r.password)),
              "Log in as an account; returns a bearer token", authentication="none", tags=(TAG,)),
    Operation("LogInByUser", "PUT", "/v1/accounts/users/login", LogInByUserRequest,
              lambda ctx, r: _session_reply(sessions.login_by_user(
                  ctx.session, r.account_name, r.user_name, r.password)),
              "Log in as a user of an account; returns a bearer token", authentication="none",
              tags=(TAG,)),
    Operation("LogOut", "DELETE", "/v1/accounts/sessions/{sessionUuid}", LogOutRequest, _log_out,
              "End a session: its token stops working at once", tags=(TAG,)),
    Operation("CreateAccount", "POST", "/v1/accounts", CreateAccountRequest,
              lambda ctx, r: accounts.create_account(ctx, **r.fields()),
              "Create an account", asynchronous=True, admin_only=True, resource="Account",
              tags=(TAG,)),
    Operation("QueryAccount", "GET", "/v1/accounts", QueryRequest,
              lambda ctx, r: query(ctx, Account, r.spec()),
              "Query accounts by any field (a normal account sees itself)",
              resource="Account", returns_list=True, query_params=QUERY_PARAMS, tags=(TAG,)),
    Operation("GetAccount", "GET", "/v1/accounts/{uuid}", UuidRequest,
              lambda ctx, r: accounts.get_account(ctx, r.uuid), "Get one account",
              resource="Account", tags=(TAG,)),
    Operation("UpdateAccount", "PUT", "/v1/accounts/{uuid}", UpdateWithPasswordRequest,
              lambda ctx, r: accounts.update_account(ctx, r.uuid, **r.fields("uuid")),
              "Change an account's name, description or password", asynchronous=True,
              resource="Account", tags=(TAG,)),
    Operation("DeleteAccount", "DELETE", "/v1/accounts/{uuid}", UuidRequest,
              lambda ctx, r: accounts.delete_account(ctx, r.uuid),
              "Delete an account that owns nothing", asynchronous=True, admin_only=True,
              tags=(TAG,)),
    Operation("CreateUser", "POST", "/v1/accounts/users", CreateUserRequest,
              lambda ctx, r: accounts.create_user(ctx, **r.fields()),
              "Create a user in the caller's account", asynchronous=True, resource="User",
              tags=(TAG,)),
    *resource_operations(
        User, "/v1/accounts/users", update_request=UpdateWithPasswordRequest,
        update=lambda ctx, r: accounts.update_user(ctx, r.uuid, **r.fields("uuid")), tag=TAG,
    ),
]
