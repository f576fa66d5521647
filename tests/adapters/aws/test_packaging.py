"""The Lambda package: same inputs give the same bytes; what goes in and what stays out."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from adapters.aws.packaging import (
    LambdaBuild,
    PackagingError,
    build_lambda_package,
    dependency_pins,
    glue_script_artifact,
)


def make_wheel(folder: Path, filename: str, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    files = {
        "ceap_engine/__init__.py": "",
        "ceap_engine/stage_runtime.py": "RUNTIME = 1\n",
        "ceap_engine/cli/app.py": "import typer\n",
        "ceap_engine/testing/__init__.py": "import pytest\n",
        "stages/__init__.py": "",
        "stages/etl.py": "def run(): ...\n",
        "stages/config/score_models.json": '{"models": []}\n',
        "adapters/__init__.py": "",
        "adapters/aws/__init__.py": "",
        "adapters/aws/handler.py": "def handler(event, context): ...\n",
        "adapters/local/objects.py": "LOCAL = 1\n",
        "stages/__pycache__/etl.cpython-311.pyc": "bytecode",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheelhouse"
    make_wheel(folder, "purepkg-1.0-py3-none-any.whl", {
        "purepkg/__init__.py": "PURE = 1\n",
        "purepkg/__pycache__/x.pyc": "junk",
        "purepkg-1.0.dist-info/METADATA": "Name: purepkg\n",
        "purepkg-1.0.data/purelib/purepkg_extra.py": "EXTRA = 1\n",
        "purepkg-1.0.data/scripts/purepkg-cli": "#!/bin/sh\n",
    })
    make_wheel(folder, "botocore-9.9-py3-none-any.whl", {
        "botocore/__init__.py": "",
        "botocore/data/endpoints.json": "{}",
        "botocore/data/s3/2006-03-01/service-2.json.gz": "s3",
        "botocore/data/dynamodb/2012-08-10/service-2.json.gz": "ddb",
        "botocore/data/ec2/2016-11-15/service-2.json.gz": "ec2",
    })
    make_wheel(folder, "fastpkg-2.0-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
               {"fastpkg/_speedups.so": "x86 machine code"})
    make_wheel(folder, "fastpkg-2.0-cp312-cp312-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
               {"fastpkg/_speedups.so": "arm machine code"})
    return folder


PINS = ["botocore==9.9", "fastpkg==2.0", "purepkg==1.0"]


def build(tmp_path: Path, source_tree: Path, wheelhouse: Path, out: str, arch: str = "x86_64") -> tuple[bytes, str]:
    artifact = build_lambda_package(
        LambdaBuild(arch=arch, wheelhouse=wheelhouse, cache_dir=tmp_path / f"cache-{out}", source_root=source_tree),
        tmp_path / out,
        pins=PINS,
    )
    return artifact.path.read_bytes(), artifact.key


def names(data: bytes) -> list[str]:
    import io

    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_the_same_inputs_give_the_same_bytes_whatever_the_file_times(
    tmp_path: Path, source_tree: Path, wheelhouse: Path
) -> None:
    first, first_key = build(tmp_path, source_tree, wheelhouse, "one")
    for path in source_tree.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    second, second_key = build(tmp_path, source_tree, wheelhouse, "two")

    assert first == second
    assert first_key == second_key
    assert first_key.startswith("ceap/lambda/") and first_key.endswith(".zip") and len(first_key) == 12 + 64 + 4


def test_a_changed_stage_changes_the_package_and_its_key(tmp_path: Path, source_tree: Path, wheelhouse: Path) -> None:
    _, before = build(tmp_path, source_tree, wheelhouse, "one")
    (source_tree / "stages/etl.py").write_text("def run(): return 2\n")
    _, after = build(tmp_path, source_tree, wheelhouse, "two")

    assert before != after


def _build_into(folder: Path, source_tree: Path, wheelhouse: Path) -> tuple[str, list[str], int]:
    """Build into ``folder``: the key, what the build reported, and the zip's modification time."""
    heard: list[str] = []
    artifact = build_lambda_package(LambdaBuild(wheelhouse=wheelhouse, source_root=source_tree), folder, pins=PINS,
                                    report=heard.append)
    return artifact.key, heard, artifact.path.stat().st_mtime_ns


def test_a_package_built_from_the_same_inputs_is_reused_not_built_again(
    tmp_path: Path, source_tree: Path, wheelhouse: Path
) -> None:
    first_key, first_heard, first_written = _build_into(tmp_path / "build", source_tree, wheelhouse)
    data = (tmp_path / "build" / "ceap-lambda-python3.12-x86_64.zip").read_bytes()
    second_key, second_heard, second_written = _build_into(tmp_path / "build", source_tree, wheelhouse)

    assert not [line for line in first_heard if "reused" in line]
    assert second_key == first_key and second_written == first_written  # the zip was not written again
    assert [line for line in second_heard if "already built from these sources and wheels, reused" in line]
    assert (tmp_path / "build" / "ceap-lambda-python3.12-x86_64.zip").read_bytes() == data


@pytest.mark.parametrize("change", ["a source file", "a wheel", "the zip itself"])
def test_a_package_whose_inputs_or_bytes_changed_is_built_again(
    tmp_path: Path, source_tree: Path, wheelhouse: Path, change: str
) -> None:
    folder = tmp_path / "build"
    first_key, _, _ = _build_into(folder, source_tree, wheelhouse)
    if change == "a source file":
        (source_tree / "stages/etl.py").write_text("def run(): return 2\n")
    elif change == "a wheel":
        make_wheel(wheelhouse, "purepkg-1.0-py3-none-any.whl", {"purepkg/__init__.py": "PURE = 2\n"})
    else:
        (folder / "ceap-lambda-python3.12-x86_64.zip").write_bytes(b"not the package")
    again_key, heard, _ = _build_into(folder, source_tree, wheelhouse)

    assert not [line for line in heard if "reused" in line]
    if change == "the zip itself":
        assert again_key == first_key  # rebuilt to the same bytes
        assert zipfile.ZipFile(folder / "ceap-lambda-python3.12-x86_64.zip").testzip() is None
    else:
        assert again_key != first_key


def test_the_package_holds_the_engine_stages_package_data_and_dependencies_only(
    tmp_path: Path, source_tree: Path, wheelhouse: Path
) -> None:
    data, _ = build(tmp_path, source_tree, wheelhouse, "one")
    listed = names(data)

    assert listed == sorted(listed)
    assert {"ceap_engine/stage_runtime.py", "stages/etl.py", "stages/config/score_models.json",
            "adapters/aws/handler.py", "purepkg/__init__.py", "purepkg_extra.py",
            "purepkg-1.0.dist-info/METADATA", "fastpkg/_speedups.so",
            "botocore/data/endpoints.json", "botocore/data/s3/2006-03-01/service-2.json.gz",
            "botocore/data/dynamodb/2012-08-10/service-2.json.gz"} <= set(listed)
    for left_out in ["ceap_engine/cli/app.py", "ceap_engine/testing/__init__.py", "adapters/local/objects.py",
                     "botocore/data/ec2/2016-11-15/service-2.json.gz", "purepkg-1.0.data/scripts/purepkg-cli"]:
        assert left_out not in listed
    assert not [n for n in listed if n.endswith(".pyc")]
    infos = zipfile.ZipFile(tmp_path / "one" / "ceap-lambda-python3.12-x86_64.zip").infolist()
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_arm64_takes_the_aarch64_wheel(tmp_path: Path, source_tree: Path, wheelhouse: Path) -> None:
    import io

    x86, _ = build(tmp_path, source_tree, wheelhouse, "x86")
    arm, _ = build(tmp_path, source_tree, wheelhouse, "arm", arch="arm64")

    assert zipfile.ZipFile(io.BytesIO(x86)).read("fastpkg/_speedups.so") == b"x86 machine code"
    assert zipfile.ZipFile(io.BytesIO(arm)).read("fastpkg/_speedups.so") == b"arm machine code"


def test_a_wheel_missing_from_the_wheelhouse_is_named_with_what_to_do(
    tmp_path: Path, source_tree: Path, wheelhouse: Path
) -> None:
    (wheelhouse / "fastpkg-2.0-cp312-cp312-manylinux2014_aarch64.manylinux_2_17_aarch64.whl").unlink()

    with pytest.raises(PackagingError, match="(?s)fastpkg.*--wheelhouse"):
        build(tmp_path, source_tree, wheelhouse, "arm", arch="arm64")


def test_dependency_pins_follow_the_installed_versions_for_lambdas_platform() -> None:
    import importlib.metadata

    pins = dependency_pins()

    assert f"pydantic-core=={importlib.metadata.version('pydantic-core')}" in pins
    assert f"botocore=={importlib.metadata.version('botocore')}" in pins
    assert any(p.startswith("aiohttp==") for p in pins)
    assert not any(p.startswith(("typer==", "rich==", "pytest==")) for p in pins)


def test_the_glue_script_is_keyed_by_content_and_keeps_its_name(tmp_path: Path) -> None:
    script = tmp_path / "heavy_etl.py"
    script.write_text("print('spark')\n")

    artifact = glue_script_artifact(script)

    assert artifact.key == f"ceap/glue/{artifact.sha256}/heavy_etl.py"
    with pytest.raises(PackagingError, match="does not exist"):
        glue_script_artifact(tmp_path / "missing.py")


@pytest.mark.parametrize(
    ("filename", "arch", "python", "fits"),
    [
        ("six-1.17.0-py2.py3-none-any.whl", "arm64", "3.12", True),
        ("pydantic_core-2.0-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", "x86_64", "3.12", True),
        ("pydantic_core-2.0-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", "arm64", "3.12", False),
        ("pydantic_core-2.0-cp311-cp311-manylinux2014_x86_64.whl", "x86_64", "3.12", False),
        ("pydantic_core-2.0-cp312-cp312-manylinux2014_x86_64.whl", "x86_64", "3.11", False),
        ("pydantic_core-2.0-cp313-cp313-manylinux_2_17_x86_64.whl", "x86_64", "3.13", True),
        ("wrapt-2.0-cp311-cp311-manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl", "x86_64", "3.11", True),
        # Amazon Linux 2 (python3.11) has glibc 2.26, Amazon Linux 2023 (python3.12+) 2.34.
        ("newglibc-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "x86_64", "3.11", False),
        ("newglibc-1.0-cp312-cp312-manylinux_2_28_x86_64.whl", "x86_64", "3.12", True),
        ("newerglibc-1.0-cp312-cp312-manylinux_2_35_x86_64.whl", "x86_64", "3.12", False),
        ("stable-1.0-cp38-abi3-manylinux_2_17_aarch64.whl", "arm64", "3.12", True),
        ("stable-1.0-cp313-abi3-manylinux_2_17_aarch64.whl", "arm64", "3.12", False),
        ("mac-1.0-cp312-cp312-macosx_11_0_arm64.whl", "arm64", "3.12", False),
        ("old-1.0-py2-none-any.whl", "x86_64", "3.12", False),
    ],
)
def test_only_wheels_that_run_on_lambdas_python_and_glibc_fit(filename: str, arch: str, python: str, fits: bool) -> None:
    from adapters.aws.packaging import wheel_fits

    assert wheel_fits(filename, arch, python) is fits


def test_an_unknown_lambda_python_is_refused() -> None:
    with pytest.raises(PackagingError, match="python3.9 is not supported"):
        LambdaBuild(python="3.9")


def test_the_real_package_holds_only_compiled_wheels_for_the_lambda_runtime_and_architecture(
    lambda_wheels: Any, tmp_path: Path
) -> None:
    """The zip built from the index's wheels (python3.12, x86_64): every compiled module is for CPython 3.12
    on manylinux x86_64 with glibc <= 2.34 (Amazon Linux 2023), as each wheel's WHEEL file says."""
    from adapters.aws.packaging import wheel_fits

    wheelhouse, report = lambda_wheels("3.12")
    artifact = build_lambda_package(LambdaBuild(python="3.12", wheelhouse=wheelhouse), tmp_path)

    archive = zipfile.ZipFile(artifact.path)
    names = archive.namelist()
    wheel_files = [n for n in names if n.endswith(".dist-info/WHEEL")]
    compiled = {}
    for name in wheel_files:
        fields = [line.split(": ", 1) for line in archive.read(name).decode().splitlines() if ": " in line]
        if ("Root-Is-Purelib", "false") in [tuple(f) for f in fields]:
            compiled[name.split("/")[0]] = [value for key, value in fields if key == "Tag"]
    assert any(d.startswith("pydantic_core-") for d in compiled), sorted(compiled)
    assert any(d.startswith("msgspec-") for d in compiled), sorted(compiled)  # the stages' record codec
    for dist, tags in compiled.items():
        assert tags and all(wheel_fits(tag, "x86_64", "3.12") for tag in tags), (dist, tags)
        assert any(tag.startswith(("cp312-cp312-", "cp3")) and "x86_64" in tag for tag in tags), (dist, tags)
    extensions = [n for n in names if n.endswith(".so")]
    assert extensions and all(("cpython-312-x86_64-linux-gnu" in n) or ".abi3." in n or "cpython" not in n
                              for n in extensions), [n for n in extensions if "312" not in n][:5]
    assert not [n for n in extensions if "cpython-311" in n]
    # Downloading says what it fetches, for the runtime and the architecture.
    assert report and report[0].startswith("downloading ") and "(python3.12, x86_64)" in report[0]
