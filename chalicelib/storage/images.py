"""Images: templates VMs boot from. This issue keeps the record; downloading comes later."""
from __future__ import annotations

from urllib.parse import urlparse

from chalicelib.context import Context
from chalicelib.db.models import BackupStorage, Image, ImageBackupStorageRef
from chalicelib.errors import InvalidArgument, InvalidState
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource

URL_SCHEMES = ("http", "https", "file", "ftp", "sftp")


def add_image(ctx: Context, *, backup_storage_uuids: list[str], url: str, **fields) -> Image:
    if urlparse(url).scheme not in URL_SCHEMES:
        raise InvalidArgument(
            f"url must start with one of {', '.join(s + '://' for s in URL_SCHEMES)}; got {url!r}",
            details={"field": "url"},
        )
    storages = [get_visible(ctx, BackupStorage, uuid, field="backupStorageUuids")
                for uuid in dict.fromkeys(backup_storage_uuids)]
    for storage in storages:
        if storage.state != "Enabled":
            raise InvalidState(f"backup storage {storage.name} ({storage.uuid}) is "
                               f"{storage.state}; enable it first")
    image = add_resource(ctx, Image(url=url, **fields))
    for storage in storages:
        ctx.session.add(ImageBackupStorageRef(image_uuid=image.uuid,
                                              backup_storage_uuid=storage.uuid))
    ctx.session.flush()
    ctx.session.refresh(image)
    return image
