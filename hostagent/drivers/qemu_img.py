"""Volume files through ``qemu-img``: create (idempotent) and delete (absent is fine)."""
from __future__ import annotations

import errno
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from hostagent.drivers.base import DriverError, ImageSource, VolumeInfo, VolumeRequest
from hostagent.drivers.image_cache import ImageCache
from hostagent.drivers.shell import Runner, run

SUPPORTED_FORMATS = ("qcow2", "raw")


class QemuImg:
    def __init__(self, runner: Runner = run, images: ImageCache | None = None) -> None:
        self._run = runner
        self._images = images if images is not None else ImageCache(self.info)

    def info(self, path: str) -> dict[str, Any]:
        # -U: the image may be open by a running qemu, which holds a write lock on it.
        return json.loads(self._run(["qemu-img", "info", "-U", "--output=json", path]))

    def create(self, request: VolumeRequest) -> VolumeInfo:
        if request.image is not None:
            return self._create_from_image(request, request.image)
        if request.format not in SUPPORTED_FORMATS:
            raise DriverError(f"unsupported volume format {request.format!r}; "
                              f"supported: {', '.join(SUPPORTED_FORMATS)}")
        if request.size is None and request.backing_file is None:
            raise DriverError("volume.create needs a size unless it has a backingFile")
        if os.path.lexists(request.path):
            self._check_same(request)
            return VolumeInfo(request.path, actual_size(request.path))
        target = Path(request.path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a read-only or full file system ...
            raise DriverError(f"cannot create directory {target.parent} for volume "
                              f"{request.path}: {exc.strerror or exc}") from exc
        partial = target.with_name(f".{target.name}.creating")
        argv = ["qemu-img", "create", "-q", "-f", request.format]
        if request.backing_file is not None:
            backing_format = self.info(request.backing_file)["format"]
            argv += ["-b", request.backing_file, "-F", backing_format]
        argv.append(str(partial))
        if request.size is not None:
            argv.append(str(request.size))
        self._run(argv)
        os.replace(partial, target)  # a crash mid-create leaves no half volume at the path
        return VolumeInfo(request.path, actual_size(request.path))

    def _create_from_image(self, request: VolumeRequest, source: ImageSource) -> VolumeInfo:
        """A qcow2 overlay on the cached image, at least as large as the image."""
        if request.format != "qcow2":
            raise DriverError(f"volume {request.path} from image {source.uuid} must be qcow2 "
                              f"(an overlay on the image), not {request.format}")
        image = self._images.fetch(source)
        size = image.virtual_size if request.size is None else max(request.size,
                                                                   image.virtual_size)
        created = self.create(replace(request, size=size, backing_file=image.path, image=None))
        return replace(created, virtual_size=size, image_size=image.virtual_size)

    def delete(self, path: str) -> None:
        try:
            os.remove(path)
        except (FileNotFoundError, NotADirectoryError):
            pass  # absent (a path under a file cannot exist either)
        except IsADirectoryError as exc:
            raise DriverError(f"{path} is a directory, not a volume") from exc
        except OSError as exc:
            raise DriverError(f"cannot delete volume {path}: {exc.strerror or exc}") from exc

    @staticmethod
    def delete_empty_directory(path: str) -> None:
        try:
            os.rmdir(path)
        except (FileNotFoundError, NotADirectoryError):
            pass  # gone already (a path under a file cannot exist either)
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:  # still holds something: left as it is
                raise DriverError(f"cannot remove directory {path}: "
                                  f"{exc.strerror or exc}") from exc

    def _check_same(self, request: VolumeRequest) -> None:
        info = self.info(request.path)
        differences = []
        if info.get("format") != request.format:
            differences.append(f"format {info.get('format')}")
        if request.size is not None and info.get("virtual-size") != request.size:
            differences.append(f"size {info.get('virtual-size')}")
        backing = info.get("full-backing-filename") or info.get("backing-filename")
        if request.backing_file is not None and backing != request.backing_file:
            differences.append(f"backing file {backing}")
        if differences:
            raise DriverError(f"volume {request.path} already exists with "
                              f"{', '.join(differences)}")


def actual_size(path: str) -> int:
    """Bytes the file occupies on disk (sparse files occupy less than their length)."""
    return os.stat(path).st_blocks * 512
