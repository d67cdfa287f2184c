"""Volumes made from an image: the image downloaded once (over HTTP from a server in the
test, or from a file:// URL) into the primary storage's image cache, checked with qemu-img,
and each volume a qcow2 overlay on it."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hostagent.drivers.base import DriverError, ImageSource, VolumeRequest
from hostagent.drivers.image_cache import ImageCache
from hostagent.drivers.qemu_img import QemuImg
from hostagent.executor import CommandExecutor

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None and os.environ.get("CI", "").lower() != "true",
    reason="qemu-img is not installed (scripts/bootstrap installs qemu-utils; under CI=true "
           "these tests must run)")

MIB = 1 << 20
IMAGE = "0a1b2c3d4e5f46a7b8c9d0e1f2a3b4c5"


@dataclass
class ImageServer:
    """Serves a folder on 127.0.0.1; counts GETs by path; can hold every answer back."""

    root: Path
    url: str = ""
    gets: dict[str, int] = field(default_factory=dict)
    hold: threading.Event = field(default_factory=threading.Event)

    def count(self, path: str) -> int:
        return self.gets.get(path, 0)


@pytest.fixture
def server(tmp_path) -> Iterator[ImageServer]:
    root = tmp_path / "www"
    root.mkdir()
    state = ImageServer(root)
    state.hold.set()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's name
            state.gets[self.path] = state.gets.get(self.path, 0) + 1
            state.hold.wait(10)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    state.hold.set()
    httpd.shutdown()
    httpd.server_close()


def make_qcow2(path: Path, size: int) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(size)],
                   check=True)
    return path


def source(url: str, cache: Path, image_uuid: str = IMAGE, fmt: str = "qcow2") -> ImageSource:
    return ImageSource(image_uuid, url, str(cache / f"{image_uuid}.qcow2"), fmt)


def test_two_volumes_of_one_image_download_it_once_and_are_overlays_on_it(server, tmp_path):
    make_qcow2(server.root / "debian.qcow2", 64 * MIB)
    cache = tmp_path / "ps" / "imagecache"
    image = source(f"{server.url}/debian.qcow2", cache)
    volumes = QemuImg()
    small = volumes.create(VolumeRequest(str(tmp_path / "ps/vms/a/root.qcow2"), 16 * MIB,
                                         image=image))
    large = volumes.create(VolumeRequest(str(tmp_path / "ps/vms/b/root.qcow2"), 128 * MIB,
                                         image=image))
    inherited = volumes.create(VolumeRequest(str(tmp_path / "ps/vms/c/root.qcow2"), None,
                                             image=image))
    assert server.count("/debian.qcow2") == 1
    assert (small.virtual_size, large.virtual_size, inherited.virtual_size) == (
        64 * MIB, 128 * MIB, 64 * MIB)  # never smaller than the image
    assert small.image_size == large.image_size == 64 * MIB
    for created in (small, large, inherited):
        info = volumes.info(created.path)
        assert info["format"] == "qcow2"
        assert info["full-backing-filename"] == image.cache_path
        assert info["backing-filename-format"] == "qcow2"
        assert info["virtual-size"] == created.virtual_size
    assert sorted(p.name for p in cache.iterdir()) == [f".{IMAGE}.qcow2.lock", f"{IMAGE}.qcow2"]
    # A redelivered command finds the volume made and the image cached.
    assert volumes.create(VolumeRequest(small.path, 16 * MIB, image=image)).path == small.path
    assert server.count("/debian.qcow2") == 1


def test_concurrent_volumes_of_one_image_wait_for_one_download(server, tmp_path):
    make_qcow2(server.root / "img.qcow2", 8 * MIB)
    image = source(f"{server.url}/img.qcow2", tmp_path / "cache")
    server.hold.clear()  # the first download stalls until both volumes are asked for
    results: dict[int, object] = {}

    def create(n: int) -> None:
        try:
            results[n] = QemuImg().create(VolumeRequest(str(tmp_path / f"v{n}.qcow2"), None,
                                                        image=image))
        except DriverError as exc:
            results[n] = exc

    threads = [threading.Thread(target=create, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    threading.Event().wait(0.5)
    server.hold.set()
    for thread in threads:
        thread.join(30)
    assert all(getattr(r, "virtual_size", None) == 8 * MIB for r in results.values()), results
    assert server.count("/img.qcow2") == 1


def test_a_missing_image_is_an_error_naming_the_url_and_leaves_nothing(server, tmp_path):
    url = f"{server.url}/gone.qcow2"
    cache = tmp_path / "cache"
    with pytest.raises(DriverError, match=f"cannot download image {IMAGE} from {url}: "
                                          "HTTP 404 File not found"):
        QemuImg().create(VolumeRequest(str(tmp_path / "v.qcow2"), MIB, image=source(url, cache)))
    assert [p.name for p in cache.iterdir()] == [f".{IMAGE}.qcow2.lock"]
    assert not (tmp_path / "v.qcow2").exists()


def test_an_error_page_or_a_corrupt_file_is_not_an_image(server, tmp_path):
    (server.root / "page.qcow2").write_text("<html><body>Please log in</body></html>")
    qcow2 = make_qcow2(tmp_path / "whole.qcow2", MIB).read_bytes()
    (server.root / "cut.qcow2").write_bytes(qcow2[:100])
    cache = tmp_path / "cache"
    with pytest.raises(DriverError, match=rf"image {IMAGE} from {server.url}/page.qcow2 is not "
                                          r"a usable qcow2 image: qemu-img reads it as raw"):
        ImageCache(QemuImg().info).fetch(source(f"{server.url}/page.qcow2", cache))
    with pytest.raises(DriverError, match=r"cut.qcow2 is not a usable qcow2 image: qemu-img "
                                          r"failed: .*"):
        ImageCache(QemuImg().info).fetch(source(f"{server.url}/cut.qcow2", cache))
    assert [p.name for p in cache.iterdir()] == [f".{IMAGE}.qcow2.lock"]


def test_an_image_with_a_backing_file_of_its_own_is_refused(server, tmp_path):
    make_qcow2(tmp_path / "base.qcow2", MIB)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(tmp_path / "base.qcow2"),
                    "-F", "qcow2", str(server.root / "child.qcow2")], check=True)
    with pytest.raises(DriverError, match="it has a backing file"):
        ImageCache(QemuImg().info).fetch(source(f"{server.url}/child.qcow2", tmp_path / "c"))


def test_a_file_url_works_and_a_raw_image_is_taken_when_declared_raw(tmp_path):
    qcow2 = make_qcow2(tmp_path / "local.qcow2", 4 * MIB)
    cached = ImageCache(QemuImg().info).fetch(source(qcow2.as_uri(), tmp_path / "cache"))
    assert cached.virtual_size == 4 * MIB and Path(cached.path).read_bytes() == qcow2.read_bytes()
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * MIB)
    volume = QemuImg().create(VolumeRequest(
        str(tmp_path / "v.qcow2"), None, image=source(raw.as_uri(), tmp_path / "cache",
                                                      "1" * 32, "raw")))
    assert QemuImg().info(volume.path)["backing-filename-format"] == "raw"
    with pytest.raises(DriverError, match="cannot download image .*: No such file"):
        ImageCache(QemuImg().info).fetch(source((tmp_path / "nope").as_uri(), tmp_path / "c"))


def test_an_unreachable_or_silent_server_fails_within_the_timeout(server, tmp_path):
    closed = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    with pytest.raises(DriverError, match=f"from http://127.0.0.1:{port}/x.qcow2: "
                                          "Connection refused"):
        ImageCache(QemuImg().info).fetch(source(f"http://127.0.0.1:{port}/x.qcow2",
                                                tmp_path / "cache"))
    make_qcow2(server.root / "slow.qcow2", MIB)
    server.hold.clear()
    with pytest.raises(DriverError, match="slow.qcow2: .*timed out|no data for"):
        ImageCache(QemuImg().info, socket_timeout=0.3).fetch(
            source(f"{server.url}/slow.qcow2", tmp_path / "cache"))


def test_volume_create_command_on_the_simulator_takes_an_image_without_downloading():
    from hostagent.drivers.simulator import SIMULATED_IMAGE_SIZE, SimulatorDriver

    executor = CommandExecutor(SimulatorDriver())
    image = {"uuid": IMAGE, "url": "http://images.invalid/debian.qcow2",
             "cachePath": f"/ps/imagecache/{IMAGE}.qcow2"}
    done = executor.execute({"id": "1", "name": "volume.create",
                             "args": {"path": "/ps/vms/a/root.qcow2", "image": image}})
    assert done["ok"], done
    assert done["result"]["size"] == done["result"]["imageSize"] == SIMULATED_IMAGE_SIZE
    recorded = executor.driver.volumes["/ps/vms/a/root.qcow2"].image
    assert recorded == ImageSource(IMAGE, image["url"], image["cachePath"], "qcow2")
    bad = executor.execute({"id": "2", "name": "volume.create", "args": {
        "path": "/ps/b.qcow2", "image": {**image, "url": "ftp://images/x.qcow2"}}})
    assert "volume.create: image: 'url' must be http://, https://, file://" in bad["error"]
