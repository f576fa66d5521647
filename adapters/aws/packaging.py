"""The Lambda code package and the Glue script, as deterministic artifacts named by content hash.

The Lambda zip holds the engine (without the CLI and the test kit), the
stages with their package data (``stages/config/*.json``), ``adapters/aws``,
and the dependencies of the Lambda side - pydantic, msgspec and aiobotocore with
everything they need - as wheels built for the Lambda runtime's platform (CPython 3.12 by
default - runtime ``python3.12`` on Amazon Linux 2023, glibc 2.34 - for ``x86_64`` or
``aarch64``; ``python3.13`` and the deprecated ``python3.11`` on request). Wheels are pinned to
the versions installed here, fetched with ``pip download --only-binary=:all:
--platform ...`` or taken from a wheelhouse folder (offline builds).

Same inputs, same bytes: entries are sorted, every timestamp is 1980-01-01,
permissions are fixed, nothing of this machine (paths, mtimes, ``.pyc``) goes
in. So the SHA-256 of the zip names it (``ceap/lambda/<sha256>.zip``) and a
deploy uploads it only when that key is not already in the artifacts bucket; and a zip
already built from the same inputs (recorded beside it) is reused, not built again.

Example::

    package = build_lambda_package(LambdaBuild(arch="arm64", wheelhouse=Path("wheels")), Path("build"))
    package.key   # 'ceap/lambda/3f5a...e1.zip'
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from ceap_engine.errors import CeapError

__all__ = [
    "Artifact",
    "LambdaBuild",
    "PackagingError",
    "build_lambda_package",
    "dependency_pins",
    "fetch_wheels",
    "glue_script_artifact",
    "wheel_fits",
]

Arch = Literal["x86_64", "arm64"]
PLATFORM_TAGS: dict[str, str] = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# The Lambda runtime the stages run on. python3.12+ run on Amazon Linux 2023 (glibc 2.34);
# python3.11 runs on Amazon Linux 2 (glibc 2.26) and is deprecated on 2027-06-30. The local
# tool itself stays on 3.11+: only the wheels in the zip follow the runtime.
DEFAULT_LAMBDA_PYTHON = "3.12"
LAMBDA_PYTHONS: dict[str, int] = {"3.11": 26, "3.12": 34, "3.13": 34}  # version -> glibc minor of its OS
DEPRECATED_LAMBDA_PYTHONS = {"3.11": "2027-06-30"}
LAMBDA_DEPENDENCY_ROOTS = ("pydantic", "msgspec", "aiobotocore")
SOURCE_PACKAGES = ("ceap_engine", "stages", "adapters")
# Not needed inside Lambda: the CLI (typer, rich), the pytest kit, the embedded backends.
EXCLUDED_SOURCES = ("ceap_engine/cli/", "ceap_engine/testing/", "adapters/local/")
# botocore ships the models of ~400 services; the stages talk to these.
BOTOCORE_SERVICES = ("s3", "dynamodb", "sts")
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_DOWNLOAD_BATCH = 8
# zlib's default level. Level 9 made the zip 0.6 % smaller (8.04 vs 8.09 MB) at 4.4 times the time
# (11.7 s vs 2.6 s on a busy 2-core machine), and every deploy and dry run builds the package.
_ZIP_LEVEL = 6


class PackagingError(CeapError):
    """The Lambda package could not be built (a wheel missing for Lambda's platform, pip failing ...)."""


@dataclass(frozen=True)
class Artifact:
    """A file to upload: where it is here, its content hash and the key it goes to."""

    path: Path
    sha256: str
    key: str
    size: int


@dataclass(frozen=True)
class LambdaBuild:
    """How to build the Lambda package: architecture, and where the wheels come from.

    With ``wheelhouse`` set, wheels are taken from that folder only (no
    network); otherwise they are downloaded from the package index into
    ``cache_dir`` (a folder that already holds them is not asked again).
    """

    arch: Arch = "x86_64"
    wheelhouse: Path | None = None
    cache_dir: Path | None = None
    source_root: Path | None = None
    python: str = DEFAULT_LAMBDA_PYTHON

    def __post_init__(self) -> None:
        if self.python not in LAMBDA_PYTHONS:
            raise PackagingError(f"Lambda runtime python{self.python} is not supported: choose one of "
                                 + ", ".join(f"python{v}" for v in LAMBDA_PYTHONS))

    @property
    def platform(self) -> str:
        return PLATFORM_TAGS[self.arch]

    @property
    def runtime(self) -> str:
        """The Lambda runtime these wheels are for: ``python3.12``."""
        return f"python{self.python}"

    @property
    def cpython_tag(self) -> str:
        """``cp312``."""
        return "cp" + self.python.replace(".", "")

    @property
    def platforms(self) -> list[str]:
        """Every ``--platform`` pip may take a wheel for: manylinux2014 and the newer glibc tags the runtime's OS has."""
        machine = "aarch64" if self.arch == "arm64" else "x86_64"
        glibc = LAMBDA_PYTHONS[self.python]
        newer = [f"manylinux_2_{minor}_{machine}" for minor in (34, 28) if minor <= glibc]
        return [*newer, self.platform]


def _marker_environment(arch: str, python: str = DEFAULT_LAMBDA_PYTHON) -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "aarch64" if arch == "arm64" else "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def _requirement_class() -> type:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip always vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    return Requirement


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def dependency_pins(roots: Iterable[str] = LAMBDA_DEPENDENCY_ROOTS, arch: Arch = "x86_64",
                    python: str = DEFAULT_LAMBDA_PYTHON) -> list[str]:
    """``name==version`` of ``roots`` and everything they need on Lambda, as installed here (sorted).

    >>> any(pin.startswith("pydantic-core==") for pin in dependency_pins(["pydantic"]))
    True
    """
    requirement = _requirement_class()
    environment = _marker_environment(arch, python)
    pins: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root, ()) for root in roots]
    while todo:
        name, extras = todo.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise PackagingError(
                f"{name} is not installed here, so its version for the Lambda package is unknown: "
                "install ceap with its aws extra (pip install 'ceap[aws]')"
            ) from None
        key = _normalise(dist.metadata["Name"])
        if key in pins:
            continue
        pins[key] = dist.version
        for text in dist.requires or ():
            req = requirement(text)
            if req.marker is None or any(req.marker.evaluate({**environment, "extra": e}) for e in ("", *extras)):
                todo.append((req.name, tuple(sorted(req.extras))))
    return sorted(f"{name}=={version}" for name, version in pins.items())


def _pip_download(pins: list[str], build: LambdaBuild, dest: Path) -> None:
    platforms = [arg for platform in build.platforms for arg in ("--platform", platform)]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", *platforms,
        "--python-version", build.python, "--implementation", "cp", "--abi", build.cpython_tag, "--abi", "abi3",
        "--abi", "none", "--dest", str(dest), *pins,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagingError(
            f"could not download wheels for Lambda ({build.platform}, CPython {build.python}) from the package index:\n"
            f"{result.stderr.strip()[-1500:]}\n"
            "Each dependency needs a wheel for that platform at the version installed here. Offline, or for a "
            "package without such a wheel, build them (for example in the public.ecr.aws/lambda/python:"
            f"{build.python} image) into a folder and pass --wheelhouse DIR"
        )


def _wheel_matches(path: Path, pins: dict[str, str]) -> str | None:
    name, version = path.name.split("-")[:2]
    key = _normalise(name)
    return key if pins.get(key) == version.replace("_", "-") or pins.get(key) == version else None


def fetch_wheels(pins: list[str], build: LambdaBuild, dest: Path, *, report: Callable[[str], None] | None = None) -> list[Path]:
    """One wheel per pin that runs on ``build``'s platform.

    From ``build.wheelhouse`` if set (read in place, nothing fetched), else
    from the package index into ``dest``, which keeps them for the next build;
    ``report`` hears what is being downloaded (it can take a while).
    """
    wanted = {_normalise(p.split("==")[0]): p.split("==")[1] for p in pins}
    folder = build.wheelhouse or dest
    folder.mkdir(parents=True, exist_ok=True)

    def present() -> dict[str, Path]:
        found: dict[str, Path] = {}
        for wheel in sorted(folder.glob("*.whl")):
            key = _wheel_matches(wheel, wanted)
            if key and wheel_fits(wheel.name, build.arch, build.python):
                found.setdefault(key, wheel)
        return found

    have = present()
    missing = [f"{name}=={version}" for name, version in sorted(wanted.items()) if name not in have]
    if missing and build.wheelhouse is None:
        if report is not None:
            report(f"downloading {len(missing)} wheel(s) for Lambda ({build.runtime}, {build.arch}) into {dest}: "
                   + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
        # One pip per batch of wheels, so a long download shows progress instead of silence.
        for start in range(0, len(missing), _DOWNLOAD_BATCH):
            _pip_download(missing[start:start + _DOWNLOAD_BATCH], build, dest)
            if report is not None and len(missing) > _DOWNLOAD_BATCH:
                report(f"  {min(start + _DOWNLOAD_BATCH, len(missing))}/{len(missing)} wheels")
        have = present()
    still = [f"{name}=={wanted[name]}" for name in sorted(set(wanted) - set(have))]
    if still:
        where = f"the wheelhouse {build.wheelhouse}" if build.wheelhouse else f"{dest} after pip download"
        raise PackagingError(
            f"no wheel for Lambda ({build.platform}, CPython {build.python}) in {where} for: {', '.join(still)}; "
            "put one there (pip download --only-binary=:all: --platform "
            f"{build.platform} --python-version {build.python} NAME==VERSION) or pass another --wheelhouse DIR"
        )
    return [have[name] for name in sorted(have)]


def wheel_fits(tags: str, arch: str, python: str = DEFAULT_LAMBDA_PYTHON) -> bool:
    """True if a wheel runs on Lambda's CPython ``python`` for ``arch`` (pure wheels fit every arch).

    ``tags`` is a wheel file name or its ``python-abi-platform`` tag triple.

    >>> wheel_fits("pydantic_core-2.0-cp312-cp312-manylinux_2_17_x86_64.whl", "x86_64", "3.12")
    True
    >>> wheel_fits("pydantic_core-2.0-cp311-cp311-manylinux_2_17_x86_64.whl", "x86_64", "3.12")
    False
    """
    python_tags, abi_tag, platform_tags = tags.removesuffix(".whl").split("-")[-3:]
    pythons = set(python_tags.split("."))
    minor = int(python.split(".")[1])
    own = f"cp3{minor}"
    if abi_tag == "abi3":
        python_ok = any(t.startswith("cp3") and t[3:].isdigit() and int(t[3:]) <= minor for t in pythons)
    else:
        python_ok = bool(pythons & {"py3", own, f"py3{minor}"}) and abi_tag in {"none", own}
    if not python_ok:
        return False
    if platform_tags == "any":
        return True
    machine = "aarch64" if arch == "arm64" else "x86_64"
    # The runtime's OS decides the newest glibc a wheel may need: Amazon Linux 2 has 2.26 (python3.11),
    # Amazon Linux 2023 has 2.34 (python3.12+). manylinux1/2010/2014 are glibc 2.5/2.12/2.17.
    glibc = LAMBDA_PYTHONS.get(python, 26)
    fitting = {f"manylinux1_{machine}", f"manylinux2010_{machine}", f"manylinux2014_{machine}"}
    fitting |= {f"manylinux_2_{m}_{machine}" for m in range(5, glibc + 1)}
    return bool(set(platform_tags.split(".")) & fitting)



@dataclass(frozen=True)
class _Entry:
    name: str
    data: bytes
    executable: bool = False


def _source_root(build: LambdaBuild) -> Path:
    if build.source_root is not None:
        return build.source_root
    import ceap_engine

    return Path(ceap_engine.__file__).resolve().parent.parent


def _source_entries(root: Path) -> Iterator[_Entry]:
    for package in SOURCE_PACKAGES:
        base = root / package
        if not base.is_dir():
            raise PackagingError(f"the package {package} is not at {base}: build from a ceap checkout or installation")
        for path in sorted(base.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
                continue
            name = path.relative_to(root).as_posix()
            if name.startswith(EXCLUDED_SOURCES):
                continue
            yield _Entry(name, path.read_bytes())


def _keep_wheel_file(name: str) -> bool:
    if "__pycache__/" in name or name.endswith((".pyc", ".pyo")):
        return False
    parts = PurePosixPath(name).parts
    if len(parts) >= 3 and parts[0] == "botocore" and parts[1] == "data":
        # Top-level files (endpoints, partitions, retry rules) stay; service models only if listed.
        return len(parts) == 3 or parts[2] in BOTOCORE_SERVICES
    return True


def _wheel_entries(wheel: Path) -> Iterator[_Entry]:
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = name.split("/")
            if parts[0].endswith(".data"):
                # purelib/platlib install to site-packages; scripts, headers and data are not for Lambda.
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                name = "/".join(parts[2:])
            if _keep_wheel_file(name):
                yield _Entry(name, archive.read(info), executable=bool((info.external_attr >> 16) & 0o111))


def write_deterministic_zip(entries: Iterable[_Entry], path: Path) -> None:
    """Write ``entries`` sorted by name, with fixed dates and modes; the first entry of a name wins."""
    unique: dict[str, _Entry] = {}
    for entry in entries:
        unique.setdefault(entry.name, entry)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(unique):
            entry = unique[name]
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode below is read
            info.external_attr = ((0o100755 if entry.executable else 0o100644) & 0xFFFF) << 16
            archive.writestr(info, entry.data, compresslevel=_ZIP_LEVEL)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)


def _artifact(path: Path, kind: str, filename: str | None = None) -> Artifact:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    key = f"ceap/{kind}/{digest}/{filename}" if filename else f"ceap/{kind}/{digest}{path.suffix}"
    return Artifact(path=path, sha256=digest, key=key, size=len(data))


def build_lambda_package(build: LambdaBuild, out_dir: Path, *, pins: list[str] | None = None,
                         report: Callable[[str], None] | None = None) -> Artifact:
    """Build the Lambda zip into ``out_dir`` and return it as an :class:`Artifact`.

    ``pins`` (``name==version``) defaults to :func:`dependency_pins`: the Lambda side's
    dependencies at the versions installed here. A zip that an earlier build left in
    ``out_dir`` from the same inputs (the same sources, wheels and packaging rules) is
    reused as it is - building it again would give the same bytes - so a dry run and the
    deploy after it build once.
    """
    pins = dependency_pins(arch=build.arch, python=build.python) if pins is None else pins
    wheel_dir = build.cache_dir or out_dir / f"wheels-{build.runtime}-{build.arch}"
    wheels = fetch_wheels(pins, build, wheel_dir, report=report)
    sources = list(_source_entries(_source_root(build)))
    path = out_dir / f"ceap-lambda-{build.runtime}-{build.arch}.zip"
    inputs = _inputs_digest(sources, wheels)
    reused = _same_inputs_package(path, inputs)
    if reused is not None:
        if report is not None:
            report(f"Lambda package: {path} is already built from these sources and wheels, reused")
        return reused

    def entries() -> Iterator[_Entry]:
        yield from sources  # our code first: it wins any name clash
        for wheel in wheels:
            yield from _wheel_entries(wheel)

    write_deterministic_zip(entries(), path)
    artifact = _artifact(path, "lambda")
    _inputs_record(path).write_text(json.dumps({"inputs": inputs, "sha256": artifact.sha256}) + "\n")
    return artifact


def _inputs_digest(sources: list[_Entry], wheels: list[Path]) -> str:
    """What the zip's bytes depend on: every source file, every wheel, and how entries are kept and compressed."""
    digest = hashlib.sha256(repr((_ZIP_LEVEL, zlib.ZLIB_RUNTIME_VERSION, EXCLUDED_SOURCES, BOTOCORE_SERVICES)).encode())
    for entry in sources:
        digest.update(f"{entry.name}\0{len(entry.data)}\0".encode() + entry.data)
    for wheel in wheels:
        with wheel.open("rb") as file:
            digest.update(f"{wheel.name}\0{hashlib.file_digest(file, 'sha256').hexdigest()}\0".encode())
    return digest.hexdigest()


def _inputs_record(package: Path) -> Path:
    return package.with_name(package.name + ".inputs")


def _same_inputs_package(package: Path, inputs: str) -> Artifact | None:
    """The package at ``package`` if its record says it was built from ``inputs`` and the zip is unchanged since."""
    try:
        recorded = json.loads(_inputs_record(package).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("inputs") != inputs or not package.is_file():
        return None
    artifact = _artifact(package, "lambda")
    return artifact if artifact.sha256 == recorded.get("sha256") else None


def glue_script_artifact(script: Path) -> Artifact:
    """The Glue job's PySpark script, keyed by its content hash (``ceap/glue/<sha256>/heavy_etl.py``)."""
    if not script.is_file():
        raise PackagingError(f"the Glue script {script} does not exist: the batch workflow's HeavyETL stage needs it")
    return _artifact(script, "glue", script.name)
