"""Identity and global configs as a client sees them: logging in and out, sessions that expire,
hashed passwords, accounts and users, who may see and change what, and the configs that tune
it all."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from chalicelib import runtime
from chalicelib.db.base import utcnow
from chalicelib.db.models import Account, ApiJob, User
from chalicelib.db.models import Session as LoginSession
from chalicelib.errors import Unauthenticated
from chalicelib.identity.sessions import authenticate
from tests.support.api import ADMIN_PASSWORD, ApiClient

MIB = 1024 * 1024
PASSWORD = "correct-horse-battery"
SESSION_TIMEOUT = "/v1/global-configurations/identity/session.timeout"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def error_of(reply: httpx.Response, status: int) -> dict[str, Any]:
    """The error body of a reply that must have failed with ``status``."""
    assert reply.status_code == status, f"expected {status}, got {reply.status_code}: {reply.text}"
    error = reply.json()["error"]
    assert error["code"], reply.text
    assert error["message"], reply.text
    return error


def login_reply(client: ApiClient, account: str, password: str) -> httpx.Response:
    return client.request("PUT", "/v1/accounts/login",
                          json={"accountName": account, "password": password}, token="")


def session_of(client: ApiClient, account: str, password: str) -> dict[str, Any]:
    """The session inventory of a fresh login (token, uuid, dates)."""
    reply = login_reply(client, account, password)
    assert reply.status_code == 200, reply.text
    return reply.json()["inventory"]


def create_account(api: ApiClient, name: str, password: str = PASSWORD) -> dict[str, Any]:
    return api.do("POST", "/v1/accounts", {"name": name, "password": password})


def logged_in_as(api: ApiClient, account: str, password: str = PASSWORD) -> ApiClient:
    """Another client on the same app, logged in as ``account``."""
    client = ApiClient(api.http)
    client.login(account, password)
    return client


def normal_account(api: ApiClient, name: str) -> ApiClient:
    create_account(api, name)
    return logged_in_as(api, name)


def create_offering(client: ApiClient, name: str) -> dict[str, Any]:
    return client.do("POST", "/v1/instance-offerings",
                     {"name": name, "cpuNum": 1, "memorySize": 16 * MIB})


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def db_row(model: type, **where: Any) -> Any:
    """One row read straight from the database, behind the API's back."""
    with runtime.current().db.session() as session:
        stmt = select(model)
        for column, value in where.items():
            stmt = stmt.where(getattr(model, column) == value)
        return session.scalars(stmt).one()


def config_named(api: ApiClient, category: str, name: str) -> dict[str, Any]:
    reply = api.get("/v1/global-configurations")
    assert reply.status_code == 200, reply.text
    matches = [c for c in reply.json()["inventories"]
               if (c["category"], c["name"]) == (category, name)]
    assert len(matches) == 1, f"{category}.{name} listed {len(matches)} times"
    return matches[0]


# ---------------------------------------------------------------------------------------------
# Logging in and out
# ---------------------------------------------------------------------------------------------

def test_login_returns_a_token_that_authenticates(anonymous: ApiClient) -> None:
    session = session_of(anonymous, "admin", ADMIN_PASSWORD)
    assert session["token"]
    assert len(session["uuid"]) == 32
    assert session["userUuid"] is None

    reply = anonymous.get("/v1/accounts", token=session["token"])
    assert reply.status_code == 200, reply.text
    assert "admin" in {a["name"] for a in reply.json()["inventories"]}
    assert session["accountUuid"] in {a["uuid"] for a in reply.json()["inventories"]}


def test_each_login_gets_its_own_token(anonymous: ApiClient) -> None:
    first = session_of(anonymous, "admin", ADMIN_PASSWORD)
    second = session_of(anonymous, "admin", ADMIN_PASSWORD)
    assert first["token"] != second["token"]
    assert first["uuid"] != second["uuid"]


def test_wrong_credentials_are_refused_without_saying_which_part_was_wrong(
        anonymous: ApiClient) -> None:
    wrong_password = error_of(login_reply(anonymous, "admin", "not-the-password"), 401)
    no_such_account = error_of(login_reply(anonymous, "no-such-account", ADMIN_PASSWORD), 401)
    assert wrong_password["code"] == "Unauthenticated"
    # The same answer either way, so the reply does not reveal which account names exist.
    assert wrong_password == no_such_account


def test_a_call_without_a_token_is_refused(anonymous: ApiClient) -> None:
    error = error_of(anonymous.get("/v1/accounts"), 401)
    assert error["code"] == "Unauthenticated"
    assert "log in" in error["message"]


@pytest.mark.parametrize("authorization", [
    "Bearer not-a-real-token",
    "Bearer ",
    "Basic YWRtaW46YWRtaW4=",
    "not-a-real-token",
])
def test_a_bad_authorization_header_is_refused(anonymous: ApiClient,
                                               authorization: str) -> None:
    reply = anonymous.get("/v1/accounts", headers={"Authorization": authorization})
    assert error_of(reply, 401)["code"] == "Unauthenticated"


def test_a_token_stops_working_after_logout(api: ApiClient) -> None:
    session = session_of(api, "admin", ADMIN_PASSWORD)
    token = session["token"]
    assert api.get("/v1/accounts", token=token).status_code == 200

    reply = api.request("DELETE", f"/v1/accounts/sessions/{session['uuid']}", token=token)
    assert reply.status_code == 200, reply.text

    assert error_of(api.get("/v1/accounts", token=token), 401)["code"] == "Unauthenticated"
    # Other sessions of the same account are untouched.
    assert api.get("/v1/accounts").status_code == 200


def test_an_account_cannot_log_out_another_accounts_session(api: ApiClient) -> None:
    alice = normal_account(api, "alice")
    admin_session = session_of(api, "admin", ADMIN_PASSWORD)

    reply = alice.request("DELETE", f"/v1/accounts/sessions/{admin_session['uuid']}")
    error_of(reply, 404)
    assert api.get("/v1/accounts", token=admin_session["token"]).status_code == 200


def test_tokens_are_not_stored_in_the_clear(api: ApiClient) -> None:
    session = session_of(api, "admin", ADMIN_PASSWORD)
    row = db_row(LoginSession, uuid=session["uuid"])
    assert row.token_hash != session["token"]
    assert session["token"] not in row.token_hash


# ---------------------------------------------------------------------------------------------
# Session expiry
# ---------------------------------------------------------------------------------------------

def test_session_lasts_the_configured_timeout(api: ApiClient) -> None:
    default = session_of(api, "admin", ADMIN_PASSWORD)
    lifetime = parse_time(default["expiredDate"]) - parse_time(default["createDate"])
    assert lifetime == timedelta(seconds=7200)

    api.do("PUT", SESSION_TIMEOUT, {"value": 60})

    session = session_of(api, "admin", ADMIN_PASSWORD)
    created, expires = parse_time(session["createDate"]), parse_time(session["expiredDate"])
    assert abs((expires - created) - timedelta(seconds=60)) < timedelta(seconds=1)
    assert abs(created - datetime.now(created.tzinfo)) < timedelta(minutes=1)


def test_an_expired_session_is_refused(api: ApiClient) -> None:
    session = session_of(api, "admin", ADMIN_PASSWORD)
    with runtime.current().db.session() as db:
        db.execute(update(LoginSession).where(LoginSession.uuid == session["uuid"])
                   .values(expired_date=utcnow() - timedelta(seconds=1)))

    error = error_of(api.get("/v1/accounts", token=session["token"]), 401)
    assert error["code"] == "Unauthenticated"
    assert "expired" in error["message"]
    # The admin client's own, unexpired session still works.
    assert api.get("/v1/accounts").status_code == 200


def test_a_session_in_use_still_expires_on_time(api: ApiClient) -> None:
    session = session_of(api, "admin", ADMIN_PASSWORD)
    assert api.get("/v1/accounts", token=session["token"]).status_code == 200  # now cached
    expiry = datetime.fromisoformat(session["expiredDate"].rstrip("Z"))
    with runtime.current().db.session() as db:
        assert authenticate(db, session["token"], now=expiry - timedelta(seconds=1))
        with pytest.raises(Unauthenticated, match="expired"):
            authenticate(db, session["token"], now=expiry + timedelta(seconds=1))


# ---------------------------------------------------------------------------------------------
# Passwords
# ---------------------------------------------------------------------------------------------

def test_account_passwords_are_stored_as_argon2id_hashes(api: ApiClient) -> None:
    account = create_account(api, "hashed", "a-secret-password")
    stored = db_row(Account, uuid=account["uuid"]).password_hash
    assert stored.startswith("$argon2id$")
    assert "a-secret-password" not in stored


def test_user_passwords_are_stored_as_argon2id_hashes(api: ApiClient) -> None:
    user = api.do("POST", "/v1/accounts/users", {"name": "ops", "password": "user-secret-pw"})
    stored = db_row(User, uuid=user["uuid"]).password_hash
    assert stored.startswith("$argon2id$")
    assert "user-secret-pw" not in stored


def test_the_same_password_hashes_differently_each_time(api: ApiClient) -> None:
    first = create_account(api, "salted-1", PASSWORD)
    second = create_account(api, "salted-2", PASSWORD)
    assert (db_row(Account, uuid=first["uuid"]).password_hash
            != db_row(Account, uuid=second["uuid"]).password_hash)


def test_password_hashes_never_leave_the_api(api: ApiClient) -> None:
    account = create_account(api, "private")
    user = api.do("POST", "/v1/accounts/users", {"name": "private-user", "password": PASSWORD})
    shown = [account, user,
             api.get(f"/v1/accounts/{account['uuid']}").json()["inventory"],
             api.get(f"/v1/accounts/users/{user['uuid']}").json()["inventory"]]
    for inventory in shown:
        assert not {"password", "passwordHash"} & set(inventory), inventory


def test_a_changed_password_replaces_the_old_one(api: ApiClient) -> None:
    account = create_account(api, "rotating")
    api.do("PUT", f"/v1/accounts/{account['uuid']}", {"password": "a-brand-new-password"})
    error_of(login_reply(api, "rotating", PASSWORD), 401)
    session_of(api, "rotating", "a-brand-new-password")


# ---------------------------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------------------------

def test_admin_creates_an_account_that_can_log_in(api: ApiClient) -> None:
    account = create_account(api, "alice")
    assert account["name"] == "alice"
    assert account["type"] == "Normal"
    assert account["state"] == "Enabled"

    session = session_of(api, "alice", PASSWORD)
    assert session["accountUuid"] == account["uuid"]


def test_a_normal_account_cannot_create_accounts(api: ApiClient) -> None:
    alice = normal_account(api, "alice")
    reply = alice.request("POST", "/v1/accounts", json={"name": "mallory", "password": PASSWORD})
    assert error_of(reply, 403)["code"] == "PermissionDenied"
    error_of(login_reply(api, "mallory", PASSWORD), 401)


def test_a_duplicate_account_name_is_refused_at_once(api: ApiClient) -> None:
    create_account(api, "alice")
    reply = api.request("POST", "/v1/accounts", json={"name": "alice", "password": PASSWORD})
    error = error_of(reply, 409)
    assert error["code"] == "Conflict"
    assert "alice" in error["message"]
    names = [a["name"] for a in api.get("/v1/accounts").json()["inventories"]]
    assert names.count("alice") == 1


def test_a_too_short_password_is_refused(api: ApiClient) -> None:
    reply = api.request("POST", "/v1/accounts", json={"name": "shorty", "password": "abc"})
    error = error_of(reply, 400)
    assert error["code"] == "InvalidArgument"
    assert error["details"]["field"] == "password"
    error_of(login_reply(api, "shorty", "abc"), 401)


def test_a_normal_account_sees_only_itself(api: ApiClient) -> None:
    alice_account = create_account(api, "alice")
    bob_account = create_account(api, "bob")
    alice = logged_in_as(api, "alice")

    listed = alice.get("/v1/accounts").json()["inventories"]
    assert [a["uuid"] for a in listed] == [alice_account["uuid"]]
    assert alice.get(f"/v1/accounts/{alice_account['uuid']}").status_code == 200
    error_of(alice.get(f"/v1/accounts/{bob_account['uuid']}"), 404)


def test_delete_account_refuses_while_it_owns_resources(api: ApiClient) -> None:
    account = create_account(api, "owner")
    owner = logged_in_as(api, "owner")
    create_offering(owner, "small")

    reply = api.request("DELETE", f"/v1/accounts/{account['uuid']}")
    error = error_of(reply, 409)
    assert "InstanceOffering" in error["message"]
    assert error["details"]["owned"] == {"InstanceOffering": 1}
    # Refused means nothing changed: the account can still log in.
    session_of(api, "owner", PASSWORD)


def test_an_account_that_owns_nothing_any_more_can_be_deleted(api: ApiClient) -> None:
    account = create_account(api, "leaving")
    leaving = logged_in_as(api, "leaving")
    offering = create_offering(leaving, "temporary")
    leaving.do("DELETE", f"/v1/instance-offerings/{offering['uuid']}")
    leaving.do("POST", "/v1/accounts/users", {"name": "helper", "password": PASSWORD})

    api.do("DELETE", f"/v1/accounts/{account['uuid']}")

    error_of(api.get(f"/v1/accounts/{account['uuid']}"), 404)
    error_of(login_reply(api, "leaving", PASSWORD), 401)
    assert error_of(leaving.get("/v1/accounts"), 401)["code"] == "Unauthenticated"


def test_accounts_a_deleted_admin_created_pass_to_the_deleting_admin(api: ApiClient) -> None:
    second_admin = api.do("POST", "/v1/accounts",
                          {"name": "ops", "password": PASSWORD, "type": "SystemAdmin"})
    ops = logged_in_as(api, "ops")
    created = ops.do("POST", "/v1/accounts", {"name": "tenant", "password": PASSWORD})

    api.do("DELETE", f"/v1/accounts/{second_admin['uuid']}")

    admin_uuid = session_of(api, "admin", ADMIN_PASSWORD)["accountUuid"]
    tenant = api.get(f"/v1/accounts/{created['uuid']}").json()["inventory"]
    assert tenant["accountUuid"] == admin_uuid
    session_of(api, "tenant", PASSWORD)


def test_the_admin_account_cannot_be_deleted(api: ApiClient) -> None:
    admin_uuid = session_of(api, "admin", ADMIN_PASSWORD)["accountUuid"]
    error_of(api.request("DELETE", f"/v1/accounts/{admin_uuid}"), 409)
    session_of(api, "admin", ADMIN_PASSWORD)


# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------

def user_login_reply(client: ApiClient, account: str, user: str,
                     password: str) -> httpx.Response:
    return client.request("PUT", "/v1/accounts/users/login", token="", json={
        "accountName": account, "userName": user, "password": password})


def test_a_user_logs_in_within_its_account(api: ApiClient) -> None:
    account = create_account(api, "team")
    team = logged_in_as(api, "team")
    user = team.do("POST", "/v1/accounts/users", {"name": "dev", "password": "dev-password"})
    assert user["accountUuid"] == account["uuid"]

    reply = user_login_reply(api, "team", "dev", "dev-password")
    assert reply.status_code == 200, reply.text
    session = reply.json()["inventory"]
    assert session["userUuid"] == user["uuid"]
    assert session["accountUuid"] == account["uuid"]

    # The user acts for its account: it sees what the account owns.
    offering = create_offering(team, "team-offering")
    seen = api.get(f"/v1/instance-offerings/{offering['uuid']}", token=session["token"])
    assert seen.status_code == 200, seen.text


@pytest.mark.parametrize(("account", "user", "password"), [
    ("team", "dev", "wrong-password"),
    ("team", "nobody", "dev-password"),
    ("admin", "dev", "dev-password"),
])
def test_wrong_user_credentials_are_refused(api: ApiClient, account: str, user: str,
                                            password: str) -> None:
    create_account(api, "team")
    logged_in_as(api, "team").do("POST", "/v1/accounts/users",
                                 {"name": "dev", "password": "dev-password"})
    error = error_of(user_login_reply(api, account, user, password), 401)
    assert error["code"] == "Unauthenticated"


def test_a_duplicate_user_name_in_one_account_is_refused(api: ApiClient) -> None:
    create_account(api, "team")
    team = logged_in_as(api, "team")
    team.do("POST", "/v1/accounts/users", {"name": "dev", "password": PASSWORD})

    reply = team.request("POST", "/v1/accounts/users",
                         json={"name": "dev", "password": "another-password"})
    error = error_of(reply, 409)
    assert error["details"]["field"] == "name"
    # The first user keeps its password.
    assert user_login_reply(api, "team", "dev", PASSWORD).status_code == 200


def test_the_same_user_name_may_exist_in_two_accounts(api: ApiClient) -> None:
    first = normal_account(api, "first")
    second = normal_account(api, "second")
    first.do("POST", "/v1/accounts/users", {"name": "dev", "password": "first-password"})
    second.do("POST", "/v1/accounts/users", {"name": "dev", "password": "second-password"})

    assert user_login_reply(api, "first", "dev", "first-password").status_code == 200
    assert user_login_reply(api, "second", "dev", "second-password").status_code == 200
    error_of(user_login_reply(api, "first", "dev", "second-password"), 401)


def test_a_user_with_a_too_short_password_is_refused(api: ApiClient) -> None:
    reply = api.request("POST", "/v1/accounts/users", json={"name": "dev", "password": "x"})
    assert error_of(reply, 400)["details"]["field"] == "password"


# ---------------------------------------------------------------------------------------------
# Ownership
# ---------------------------------------------------------------------------------------------

def test_an_account_cannot_see_or_change_another_accounts_resource(api: ApiClient) -> None:
    alice = normal_account(api, "alice")
    bob = normal_account(api, "bob")
    offering = create_offering(alice, "alice-only")
    path = f"/v1/instance-offerings/{offering['uuid']}"

    error_of(bob.get(path), 404)
    assert offering["uuid"] not in {o["uuid"] for o in
                                    bob.get("/v1/instance-offerings").json()["inventories"]}
    error_of(bob.request("PUT", path, json={"name": "stolen"}), 404)
    error_of(bob.request("DELETE", path), 404)

    # Nothing bob tried changed it; alice still has it, untouched.
    mine = alice.get(path)
    assert mine.status_code == 200
    assert mine.json()["inventory"]["name"] == "alice-only"


def test_the_owner_and_admin_see_the_resource(api: ApiClient) -> None:
    alice = normal_account(api, "alice")
    offering = create_offering(alice, "shared-view")

    listed = {o["uuid"] for o in alice.get("/v1/instance-offerings").json()["inventories"]}
    assert offering["uuid"] in listed

    seen = api.get(f"/v1/instance-offerings/{offering['uuid']}")
    assert seen.status_code == 200
    assert seen.json()["inventory"]["accountUuid"] == offering["accountUuid"]
    listed = {o["uuid"] for o in api.get("/v1/instance-offerings").json()["inventories"]}
    assert offering["uuid"] in listed


def test_a_normal_account_cannot_create_a_zone(api: ApiClient) -> None:
    alice = normal_account(api, "alice")
    reply = alice.request("POST", "/v1/zones", json={"name": "rogue-zone"})
    assert error_of(reply, 403)["code"] == "PermissionDenied"
    assert api.get("/v1/zones").json()["inventories"] == []


# ---------------------------------------------------------------------------------------------
# Global configs
# ---------------------------------------------------------------------------------------------

def test_query_lists_the_session_timeout_with_its_default(api: ApiClient) -> None:
    config = config_named(api, "identity", "session.timeout")
    assert config["defaultValue"] == "7200"
    assert config["value"] == "7200"
    assert config["description"]


def test_get_update_and_reset_a_config(api: ApiClient) -> None:
    updated = api.do("PUT", SESSION_TIMEOUT, {"value": 600})
    assert updated["value"] == "600"
    assert api.get(SESSION_TIMEOUT).json()["inventory"]["value"] == "600"
    assert config_named(api, "identity", "session.timeout")["value"] == "600"

    reset = api.do("PUT", f"{SESSION_TIMEOUT}/actions/reset")
    assert reset["value"] == reset["defaultValue"] == "7200"
    assert api.get(SESSION_TIMEOUT).json()["inventory"]["value"] == "7200"


@pytest.mark.parametrize("value", ["soon", "60s", 90.5, True, ""])
def test_a_non_integer_value_is_refused(api: ApiClient, value: Any) -> None:
    error = error_of(api.request("PUT", SESSION_TIMEOUT, json={"value": value}), 400)
    assert error["code"] == "InvalidArgument"
    assert error["details"]["field"] == "value"
    assert api.get(SESSION_TIMEOUT).json()["inventory"]["value"] == "7200"


@pytest.mark.parametrize("value", [59, 0, -1, 31_536_001])
def test_a_value_out_of_bounds_is_refused(api: ApiClient, value: int) -> None:
    error = error_of(api.request("PUT", SESSION_TIMEOUT, json={"value": value}), 400)
    assert error["details"]["field"] == "value"
    assert api.get(SESSION_TIMEOUT).json()["inventory"]["value"] == "7200"


def test_the_bounds_themselves_are_accepted(api: ApiClient) -> None:
    assert api.do("PUT", SESSION_TIMEOUT, {"value": 60})["value"] == "60"
    assert api.do("PUT", SESSION_TIMEOUT, {"value": 31_536_000})["value"] == "31536000"


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/global-configurations/identity/no.such.config", None),
    ("PUT", "/v1/global-configurations/identity/no.such.config", {"value": 1}),
    ("PUT", "/v1/global-configurations/nowhere/session.timeout", {"value": 60}),
    ("PUT", "/v1/global-configurations/identity/no.such.config/actions/reset", None),
])
def test_an_unknown_config_is_not_found(api: ApiClient, method: str, path: str,
                                        body: dict[str, Any] | None) -> None:
    assert error_of(api.request(method, path, json=body), 404)["code"] == "ResourceNotFound"


def test_a_normal_account_cannot_change_configs(api: ApiClient) -> None:
    alice = normal_account(api, "alice")
    error_of(alice.request("PUT", SESSION_TIMEOUT, json={"value": 60}), 403)
    error_of(alice.request("PUT", f"{SESSION_TIMEOUT}/actions/reset"), 403)
    assert api.get(SESSION_TIMEOUT).json()["inventory"]["value"] == "7200"


def test_the_password_minimum_is_a_live_config(api: ApiClient) -> None:
    path = "/v1/global-configurations/identity/password.minLength"
    api.do("PUT", path, {"value": 20})
    reply = api.request("POST", "/v1/accounts",
                        json={"name": "strict", "password": "only-15-chars!!"})
    assert error_of(reply, 400)["details"]["field"] == "password"

    api.do("PUT", f"{path}/actions/reset")
    create_account(api, "strict", "only-15-chars!!")
    session_of(api, "strict", "only-15-chars!!")


def test_passwords_do_not_stay_in_the_job_record(api: ApiClient) -> None:
    reply = api.request("POST", "/v1/accounts",
                        json={"name": "wiped", "password": "a-very-secret-pass"})
    api.wait_job(reply.json()["jobUuid"])
    with runtime.current().db.session() as db:
        stored = db.get(ApiJob, reply.json()["jobUuid"]).request
    assert "a-very-secret-pass" not in stored
    assert '"name": "wiped"' in stored


def test_names_of_only_spaces_are_refused(api: ApiClient) -> None:
    error = error_of(api.request("POST", "/v1/zones", json={"name": "   "}), 400)
    assert error["details"]["field"] == "name"
