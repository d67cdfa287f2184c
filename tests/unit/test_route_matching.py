"""The embedded server's route matcher answers exactly as Chalice's (and API Gateway's):
literal segments win over captures, and each route gets only its own path parameters."""
import pytest
from chalice.local import RouteMatcher

import app
from chalicelib.runtime.wsgi import IndexedRouteMatcher

ROUTES = list(app.app.routes)
URLS = [
    "/v1/zones", "/v1/zones/abc", "/v1/zones/abc/", "/v1/zones/abc/actions/change-state",
    "/v1/zones/z1/backup-storage/b1", "/v1/l3-networks/ip-ranges", "/v1/l3-networks/ip-ranges/r1",
    "/v1/l3-networks/n1/ip-ranges", "/v1/l3-networks/n1/ip-ranges/by-cidr",
    "/v1/l3-networks/n1/dns/8.8.8.8", "/v1/accounts/login", "/v1/accounts/users",
    "/v1/accounts/users/u1", "/v1/accounts/a1",
    "/v1/global-configurations/identity/x/actions/reset",
    "/v1/zones?limit=5&start=1",
]


@pytest.mark.parametrize("url", URLS)
def test_same_route_and_parameters_as_chalice(url):
    ours = IndexedRouteMatcher(ROUTES).match_route(url)
    theirs = RouteMatcher(ROUTES).match_route(url)
    assert ours.route == theirs.route
    # Chalice's matcher leaks captures from routes it tried first; ours keeps only the route's.
    names = {part[1:-1] for part in ours.route.split("/") if part.startswith("{")}
    assert ours.captured == {k: v for k, v in theirs.captured.items() if k in names}
    assert set(ours.captured) == names
    assert ours.query_params == theirs.query_params


@pytest.mark.parametrize("url", ["/v1/nothing", "/v2/zones", "/v1/zones/a/b/c/d/e", "/"])
def test_unknown_paths_match_nothing(url):
    with pytest.raises(ValueError):
        IndexedRouteMatcher(ROUTES).match_route(url)
