"""Zones, clusters, instance and disk offerings."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chalicelib.api.crud import resource_operations
from chalicelib.api.operation import Operation
from chalicelib.api.request import CreateRequest, Description, Name, Uuid
from chalicelib.compute import datacenter, offerings
from chalicelib.db.models import Cluster, DiskOffering, InstanceOffering, Zone

MIB = 1024 * 1024


class CreateZoneRequest(CreateRequest):
    name: Name
    description: Description | None = None


class CreateClusterRequest(CreateRequest):
    zone_uuid: Uuid
    name: Name
    description: Description | None = None
    hypervisor_type: Literal["KVM", "Simulator"] = "KVM"


class CreateInstanceOfferingRequest(CreateRequest):
    name: Name
    description: Description | None = None
    cpu_num: Annotated[int, Field(ge=1, le=1024, description="Virtual CPUs")]
    cpu_speed: Annotated[int, Field(ge=0)] = 0
    memory_size: Annotated[int, Field(ge=16 * MIB, le=16 * 1024 ** 4,
                                      description="Memory in bytes (at least 16 MiB)")]
    allocator_strategy: Literal["DefaultHostAllocatorStrategy", "LeastVmPreferredHostAllocatorStrategy"] = "DefaultHostAllocatorStrategy"  # noqa: E501
    sort_key: int = 0
    type: Literal["UserVm"] = "UserVm"


class CreateDiskOfferingRequest(CreateRequest):
    name: Name
    description: Description | None = None
    disk_size: Annotated[int, Field(ge=MIB, le=1024 ** 5, description="Size in bytes")]
    sort_key: int = 0


OPERATIONS = [
    Operation("CreateZone", "POST", "/v1/zones", CreateZoneRequest,
              lambda ctx, r: datacenter.create_zone(ctx, **r.fields()),
              "Create a zone", asynchronous=True, admin_only=True, resource="Zone",
              tags=("zone",)),
    *resource_operations(Zone, "/v1/zones", admin_only=True, has_state=True, tag="zone"),
    Operation("CreateCluster", "POST", "/v1/clusters", CreateClusterRequest,
              lambda ctx, r: datacenter.create_cluster(ctx, **r.fields()),
              "Create a cluster in a zone", asynchronous=True, admin_only=True,
              resource="Cluster", tags=("cluster",)),
    *resource_operations(Cluster, "/v1/clusters", admin_only=True, has_state=True,
                         tag="cluster"),
    Operation("CreateInstanceOffering", "POST", "/v1/instance-offerings",
              CreateInstanceOfferingRequest,
              lambda ctx, r: offerings.create_instance_offering(ctx, **r.fields()),
              "Create an instance offering (CPU and memory of a VM)", asynchronous=True,
              resource="InstanceOffering", tags=("offering",)),
    *resource_operations(InstanceOffering, "/v1/instance-offerings", has_state=True,
                         tag="offering"),
    Operation("CreateDiskOffering", "POST", "/v1/disk-offerings", CreateDiskOfferingRequest,
              lambda ctx, r: offerings.create_disk_offering(ctx, **r.fields()),
              "Create a disk offering (size of a data volume)", asynchronous=True,
              resource="DiskOffering", tags=("offering",)),
    *resource_operations(DiskOffering, "/v1/disk-offerings", has_state=True, tag="offering"),
]
