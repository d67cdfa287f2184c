"""Images downloaded once into a primary storage's image cache, for volumes to boot from.

A volume request may name an image (``volume.create`` / ``volumes.create`` args)::

    "image": {"uuid": str, "url": "http://…" | "https://…" | "file:///…",
              "cachePath": "<mount>/imagecache/<imageUuid>.qcow2",
              "format": "qcow2" | "raw"}            # optional, default "qcow2"

The first volume made from an image downloads it to a temporary file beside ``cachePath``,
checks it with ``qemu-img info`` (it must be of ``format``, standalone, and as long as the
server said) and renames it into place; every volume of that image on that storage is then a
qcow2 overlay backed by the cached file. A lock file beside the cache file makes concurrent
requests (threads or processes) download it once; the others wait for it and use it.
"""
from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hostagent.drivers.base import DriverError, ImageSource
from hostagent.drivers.file_lock import exclusive_lock
from hostagent.drivers.shell import CommandFailed

DOWNLOAD_TIMEOUT_SECONDS = 3600.0  # a whole download
SOCKET_TIMEOUT_SECONDS = 30.0  # connecting, and waiting for any one piece of data
CHUNK_BYTES = 1 << 20

ImageInfo = Callable[[str], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class CachedImage:
    path: str
    format: str
    virtual_size: int


class ImageCache:
    def __init__(self, info: ImageInfo, *, timeout: float = DOWNLOAD_TIMEOUT_SECONDS,
                 socket_timeout: float = SOCKET_TIMEOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._info = info
        self.timeout = timeout
        self.socket_timeout = socket_timeout
        self._clock = clock

    def fetch(self, source: ImageSource) -> CachedImage:
        """The image in its cache file, downloaded first if it is not there yet."""
        cache = Path(source.cache_path)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DriverError(f"cannot create image cache directory {cache.parent}: "
                              f"{exc.strerror or exc}") from exc
        # Waiting for another download of the same image may take as long as that download.
        with exclusive_lock(cache.with_name(f".{cache.name}.lock"), self.timeout + 60,
                            f"image cache file {cache}"):
            if not cache.exists():
                self._download(source, cache)
            return CachedImage(str(cache), source.format, self._check(source, cache))

    def _download(self, source: ImageSource, cache: Path) -> None:
        for stale in cache.parent.glob(f".{cache.name}.*.download"):
            stale.unlink(missing_ok=True)  # left by a download that crashed; we hold the lock
        partial = cache.with_name(f".{cache.name}.{os.getpid()}.download")
        try:
            self._copy_url(source, partial)
            self._check(source, partial)
            os.replace(partial, cache)
        finally:
            partial.unlink(missing_ok=True)

    def _copy_url(self, source: ImageSource, target: Path) -> None:
        failed = f"cannot download image {source.uuid} from {source.url}"
        deadline = self._clock() + self.timeout
        try:
            with urllib.request.urlopen(source.url, timeout=self.socket_timeout) as response, \
                    open(target, "wb") as out:
                copied = self._copy(response, out, deadline, failed)
                expected = response.headers.get("Content-Length")
                if expected is not None and expected.isdigit() and copied != int(expected):
                    raise DriverError(f"{failed}: the connection ended after {copied} of "
                                      f"{expected} bytes")
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as exc:
            raise DriverError(f"{failed}: HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise DriverError(f"{failed}: {_reason(exc.reason)}") from exc
        except TimeoutError as exc:
            raise DriverError(f"{failed}: no data for {self.socket_timeout:.0f} s") from exc
        except (OSError, http.client.HTTPException) as exc:  # dropped, or cannot be written
            raise DriverError(f"{failed}: {getattr(exc, 'strerror', None) or exc!r}") from exc

    def _copy(self, response: IO[bytes], out: IO[bytes], deadline: float, failed: str) -> int:
        copied = 0
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            copied += len(chunk)
            if self._clock() > deadline:
                raise DriverError(f"{failed}: not done after {self.timeout:.0f} s "
                                  f"({copied} bytes so far)")
        return copied

    def _check(self, source: ImageSource, path: Path) -> int:
        """The image's virtual size, once qemu-img agrees it is a usable image."""
        unusable = f"image {source.uuid} from {source.url} is not a usable {source.format} image"
        try:
            info = self._info(str(path))
        except CommandFailed as exc:
            raise DriverError(f"{unusable}: {exc}") from exc
        found = info.get("format")
        if found != source.format:
            raise DriverError(f"{unusable}: qemu-img reads it as {found} (an error page, or "
                              "the wrong URL?)")
        if info.get("backing-filename"):
            # A backing file named inside a downloaded image could point anywhere on the host.
            raise DriverError(f"{unusable}: it has a backing file "
                              f"({info['backing-filename']}); only standalone images are used")
        return int(info["virtual-size"])


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
