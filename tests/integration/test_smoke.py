def test_create_zone_through_a_job_then_read_it(api):
    zone = api.do("POST", "/v1/zones", {"name": "z1", "description": "first"})
    reply = api.get(f"/v1/zones/{zone['uuid']}")
    assert reply.status_code == 200
    assert reply.json()["inventory"]["name"] == "z1"
