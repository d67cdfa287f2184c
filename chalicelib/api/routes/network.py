"""L2 networks, L3 networks, IP ranges and DNS."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chalicelib.api.crud import attachment_operations, resource_operations
from chalicelib.api.operation import Operation
from chalicelib.api.request import ApiRequest, CreateRequest, Description, Name, Uuid
from chalicelib.db.models import IpRange, L2Network, L3Network
from chalicelib.network import ip_ranges, l2, l3

IpText = Annotated[str, Field(min_length=1, max_length=64)]


class CreateL2NoVlanNetworkRequest(CreateRequest):
    zone_uuid: Uuid
    name: Name
    description: Description | None = None
    physical_interface: Annotated[str, Field(min_length=1, max_length=1024,
                                             pattern=r"^[A-Za-z0-9_.:-]+$")]


class CreateL2VlanNetworkRequest(CreateL2NoVlanNetworkRequest):
    vlan: Annotated[int, Field(ge=1, le=4094)]


class L2NetworkClusterRequest(ApiRequest):
    l2_network_uuid: Uuid
    cluster_uuid: Uuid


class CreateL3NetworkRequest(CreateRequest):
    l2_network_uuid: Uuid
    name: Name
    description: Description | None = None
    type: Literal["L3BasicNetwork"] = "L3BasicNetwork"
    category: Literal["Public", "Private", "System"] = "Private"
    system: bool = False
    dns_domain: Annotated[str, Field(max_length=255)] | None = None


class DnsRequest(ApiRequest):
    l3_network_uuid: Uuid
    dns: IpText


class AddIpRangeRequest(CreateRequest):
    l3_network_uuid: Uuid
    name: Name
    description: Description | None = None
    start_ip: IpText
    end_ip: IpText
    netmask: IpText
    gateway: IpText


class AddIpRangeByNetworkCidrRequest(CreateRequest):
    l3_network_uuid: Uuid
    name: Name
    description: Description | None = None
    network_cidr: IpText = Field(description="e.g. 192.168.10.0/24")
    gateway: IpText | None = Field(None, description="First host of the network by default")


def _create_l2(kind: str):
    return lambda ctx, r: l2.create_l2_network(ctx, type=kind, **r.fields())


OPERATIONS = [
    Operation("CreateL2NoVlanNetwork", "POST", "/v1/l2-networks/no-vlan",
              CreateL2NoVlanNetworkRequest, _create_l2("L2NoVlanNetwork"),
              "Create an L2 network on a physical interface", asynchronous=True,
              admin_only=True, resource="L2Network", tags=("l2 network",)),
    Operation("CreateL2VlanNetwork", "POST", "/v1/l2-networks/vlan",
              CreateL2VlanNetworkRequest, _create_l2("L2VlanNetwork"),
              "Create an L2 network on a VLAN of a physical interface", asynchronous=True,
              admin_only=True, resource="L2Network", tags=("l2 network",)),
    *resource_operations(L2Network, "/v1/l2-networks", admin_only=True, tag="l2 network"),
    *attachment_operations(
        "AttachL2NetworkToCluster", "DetachL2NetworkFromCluster",
        "/v1/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}", L2NetworkClusterRequest,
        lambda ctx, r: l2.attach_to_cluster(ctx, r.l2_network_uuid, r.cluster_uuid),
        lambda ctx, r: l2.detach_from_cluster(ctx, r.l2_network_uuid, r.cluster_uuid),
        what="an L2 network to / from a cluster of its zone", resource="L2Network",
        tag="l2 network"),
    Operation("CreateL3Network", "POST", "/v1/l3-networks", CreateL3NetworkRequest,
              lambda ctx, r: l3.create_l3_network(ctx, **r.fields()),
              "Create an L3 network on an L2 network", asynchronous=True,
              resource="L3Network", tags=("l3 network",)),
    *resource_operations(L3Network, "/v1/l3-networks", has_state=True, tag="l3 network"),
    Operation("AddDnsToL3Network", "POST", "/v1/l3-networks/{l3NetworkUuid}/dns", DnsRequest,
              lambda ctx, r: l3.add_dns(ctx, r.l3_network_uuid, r.dns),
              "Add a DNS server to an L3 network", asynchronous=True, resource="L3Network",
              tags=("l3 network",)),
    Operation("RemoveDnsFromL3Network", "DELETE", "/v1/l3-networks/{l3NetworkUuid}/dns/{dns}",
              DnsRequest, lambda ctx, r: l3.remove_dns(ctx, r.l3_network_uuid, r.dns),
              "Remove a DNS server from an L3 network", asynchronous=True,
              resource="L3Network", tags=("l3 network",)),
    Operation("AddIpRange", "POST", "/v1/l3-networks/{l3NetworkUuid}/ip-ranges",
              AddIpRangeRequest, lambda ctx, r: ip_ranges.add_ip_range(ctx, **r.fields()),
              "Add an IP range by start, end, netmask and gateway", asynchronous=True,
              resource="IpRange", tags=("l3 network",)),
    Operation("AddIpRangeByNetworkCidr", "POST",
              "/v1/l3-networks/{l3NetworkUuid}/ip-ranges/by-cidr",
              AddIpRangeByNetworkCidrRequest,
              lambda ctx, r: ip_ranges.add_ip_range_by_cidr(ctx, **r.fields()),
              "Add an IP range covering a whole network", asynchronous=True,
              resource="IpRange", tags=("l3 network",)),
    *resource_operations(IpRange, "/v1/l3-networks/ip-ranges", tag="l3 network"),
]
