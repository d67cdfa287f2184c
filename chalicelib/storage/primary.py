"""Primary storage holds volumes; it serves the clusters it is attached to."""
from __future__ import annotations

from chalicelib.attachments import Attachment, require_same_zone
from chalicelib.context import Context
from chalicelib.db.models import Cluster, PrimaryStorage, PrimaryStorageClusterRef, Zone
from chalicelib.errors import InvalidArgument
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource


def _check_url(type_: str, url: str) -> None:
    if type_ == "LocalStorage" and not url.startswith("/"):
        raise InvalidArgument(f"url of local storage must be an absolute path, got {url!r}",
                              details={"field": "url"})
    if type_ == "NFS":
        server, _, path = url.partition(":")
        if not server or not path.startswith("/"):
            raise InvalidArgument(f"url of NFS storage must be server:/export/path, got {url!r}",
                                  details={"field": "url"})


def add_primary_storage(ctx: Context, *, type: str, zone_uuid: str, name: str, url: str,
                        description: str | None, total_capacity: int = 0) -> PrimaryStorage:
    zone = get_visible(ctx, Zone, zone_uuid, field="zoneUuid")
    _check_url(type, url)
    return add_resource(ctx, PrimaryStorage(
        type=type, zone_uuid=zone.uuid, name=name, url=url, description=description,
        mount_path=url, total_capacity=total_capacity, available_capacity=total_capacity))


CLUSTERS = Attachment(PrimaryStorageClusterRef, PrimaryStorage, "primaryStorageUuid", Cluster,
                      "clusterUuid")


def attach_to_cluster(ctx: Context, primary_storage_uuid: str, cluster_uuid: str) -> PrimaryStorage:
    return CLUSTERS.attach(ctx, primary_storage_uuid, cluster_uuid, require_same_zone)


def detach_from_cluster(ctx: Context, primary_storage_uuid: str,
                        cluster_uuid: str) -> PrimaryStorage:
    return CLUSTERS.detach(ctx, primary_storage_uuid, cluster_uuid)
