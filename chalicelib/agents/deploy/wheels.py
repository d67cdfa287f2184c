"""The wheels the control plane ships to a host, so the agent installs offline there.

A bundle holds this project's wheel (built from a staged copy of ``hostagent/`` and the
project files: the host needs nothing else of the control plane) and the agent's
pure-Python runtime dependencies, repacked from the distributions installed beside the
control plane (the very versions it was tested with; nothing is downloaded). The host's
Debian python provides the rest (python3-libvirt). boto3, needed only for ``--sqs``, is not
shipped.

A bundle is a directory holding ``wheels.tar`` (the wheels: one file to copy, which is
seconds faster than a directory over SSH) and ``SHA256SUMS`` (of the wheels: the playbook
installs a bundle it has not installed before). Bundles are cached under the var dir by a
digest of the agent's sources and those dependencies' versions, and built again when either
changes. ``python -m chalicelib.agents.deploy VAR_DIR`` builds one and prints where.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
AGENT_PACKAGE = "hostagent"
# app.py: pyproject.toml names it as a module, so the build needs it.
PROJECT_FILES = ("pyproject.toml", "requirements.txt", "app.py")
# What hostagent imports beyond the standard library and libvirt.
AGENT_REQUIREMENTS = ("httpx",)
# Dependency markers are evaluated for the oldest Python a host may run (the agent needs
# 3.11: Debian 12, Ubuntu 24.04), so a dependency only older Pythons need is shipped too.
HOST_PYTHON = {"python_version": "3.11", "python_full_version": "3.11.0", "extra": ""}
SUMS_FILE = "SHA256SUMS"
ARCHIVE_FILE = "wheels.tar"
WHEEL_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: reproducible wheels
INSTALLATION_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


class AgentWheelsError(RuntimeError):
    """The bundle cannot be built; the message says what is missing."""


def agent_source_digest() -> str:
    """sha256 over the agent's sources, the project files and the shipped dependencies'
    versions: what decides whether a host's installed agent is current."""
    digest = hashlib.sha256()
    for path in _agent_sources():
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes())
    for dist in runtime_distributions():
        digest.update(f"{dist.metadata['Name']}=={dist.version}\0".encode())
    return digest.hexdigest()


def agent_wheels(var_dir: Path) -> Path:
    """The directory of the current bundle, built if needed."""
    cache = var_dir / "agent-deploy" / "wheels"
    bundle = cache / agent_source_digest()[:16]
    if (bundle / SUMS_FILE).is_file():
        return bundle
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        wheels = staging / "wheels"
        wheels.mkdir()
        build_project_wheel(wheels)
        for dist in runtime_distributions():
            repack_wheel(dist, wheels)
        _pack(wheels, staging)
        shutil.rmtree(wheels)
        try:
            staging.rename(bundle)
        except OSError:
            if not (bundle / SUMS_FILE).is_file():
                raise
            # another deploy built the same bundle meanwhile: theirs is as good
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for other in cache.iterdir():
        if other != bundle and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    return bundle


def runtime_distributions() -> list[metadata.Distribution]:
    """The installed distributions the agent needs, dependencies included, by name."""
    from packaging.requirements import Requirement  # comes with ansible-core, not in Lambda

    found: dict[str, metadata.Distribution] = {}
    pending = [Requirement(text) for text in AGENT_REQUIREMENTS]
    while pending:
        requirement = pending.pop()
        name = _normalized(requirement.name)
        if name in found:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError as exc:
            raise AgentWheelsError(f"the agent needs {requirement.name}, which is not "
                                   "installed beside the control plane") from exc
        found[name] = dist
        for text in dist.requires or ():
            nested = Requirement(text)
            if nested.marker is None or nested.marker.evaluate(HOST_PYTHON):
                pending.append(nested)
    return [found[name] for name in sorted(found)]


def build_project_wheel(out_dir: Path) -> Path:
    """This project's wheel, holding ``hostagent`` (and the module ``app``) only."""
    with tempfile.TemporaryDirectory(prefix="aerie-agent-src-") as tmp:
        source = Path(tmp)
        shutil.copytree(PROJECT_ROOT / AGENT_PACKAGE, source / AGENT_PACKAGE,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in PROJECT_FILES:
            shutil.copy2(PROJECT_ROOT / name, source / name)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--no-index", "--no-build-isolation", "--wheel-dir", str(out_dir),
             str(source)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AgentWheelsError(f"pip wheel failed: {done.stderr.strip()[-2000:]}")
    return next(out_dir.glob("aerie-*.whl"))


def repack_wheel(dist: metadata.Distribution, out_dir: Path) -> Path:
    """A wheel of an installed pure-Python distribution, from the files its RECORD lists."""
    name = dist.metadata["Name"]
    wheel_info = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: true" not in wheel_info:
        raise AgentWheelsError(f"{name} is not pure Python: the host cannot install it "
                               "from a wheel built here")
    files = [path for path in dist.files or ()
             if path.parts[0] != ".." and "__pycache__" not in path.parts]
    info_dirs = {path.parts[0] for path in files if path.parts[0].endswith(".dist-info")}
    if len(info_dirs) != 1:
        raise AgentWheelsError(f"{name}: cannot find its .dist-info directory")
    info_dir = info_dirs.pop()
    target = out_dir / f"{_normalized(name)}-{dist.version}-{_wheel_tag(wheel_info)}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path in sorted(files, key=str):
            if path.parts[0] == info_dir and path.name in INSTALLATION_FILES:
                continue
            data = Path(str(path.locate())).read_bytes()
            _add(wheel, str(path), data)
            hashed = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            writer.writerow([str(path), f"sha256={hashed.decode()}", len(data)])
        writer.writerow([f"{info_dir}/RECORD", "", ""])
        _add(wheel, f"{info_dir}/RECORD", record.getvalue().encode())
    return target


def _agent_sources() -> list[Path]:
    package = PROJECT_ROOT / AGENT_PACKAGE
    sources = [path for path in package.rglob("*.py") if "__pycache__" not in path.parts]
    return sorted(sources) + [PROJECT_ROOT / name for name in PROJECT_FILES]


def _add(wheel: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, WHEEL_TIMESTAMP)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    wheel.writestr(info, data)


def _wheel_tag(wheel_info: str) -> str:
    """``py3-none-any`` from the WHEEL file's Tag lines (several tags compressed into one
    ``py2.py3-none-any``)."""
    tags = [line.split(":", 1)[1].strip() for line in wheel_info.splitlines()
            if line.startswith("Tag:")] or ["py3-none-any"]
    parts = [tag.split("-") for tag in tags]
    return "-".join(".".join(dict.fromkeys(part[i] for part in parts)) for i in range(3))


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _pack(wheels: Path, bundle: Path) -> None:
    """``wheels.tar``, then ``SHA256SUMS``: a bundle with its sums file is complete."""
    paths = sorted(wheels.glob("*.whl"))
    with tarfile.open(bundle / ARCHIVE_FILE, "w") as archive:
        for path in paths:
            archive.add(path, arcname=path.name, filter=_plain_member)
    (bundle / SUMS_FILE).write_text("".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n" for path in paths))


def _plain_member(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    member.mode = 0o644
    return member

