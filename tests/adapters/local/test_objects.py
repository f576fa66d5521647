"""What only the file object store has: its layout on disk, atomic writes, paths that must not escape."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.local import FileObjectStore
from adapters.local.objects import TEMP_FILE_PREFIX
from ceap_engine.errors import InvalidKey, ObjectNotFound, StorageError

BUCKET = "ceap-local"
KEY = "executions/e-1/ETL/output.json"


@pytest.fixture
def store(tmp_path: Path) -> FileObjectStore:
    return FileObjectStore(tmp_path / ".ceap")


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


async def test_objects_live_at_root_buckets_bucket_key(store: FileObjectStore, tmp_path: Path) -> None:
    await store.put(BUCKET, KEY, b'{"ok":true}')

    path = tmp_path / ".ceap" / "buckets" / BUCKET / "executions" / "e-1" / "ETL" / "output.json"
    assert path.read_bytes() == b'{"ok":true}'
    assert store.path_of(BUCKET, KEY) == path
    assert files_under(tmp_path / ".ceap") == [f"buckets/{BUCKET}/{KEY}"]


async def test_a_second_store_on_the_same_root_sees_the_objects(store: FileObjectStore, tmp_path: Path) -> None:
    await store.put(BUCKET, KEY, b"persisted")

    reopened = FileObjectStore(tmp_path / ".ceap")

    assert await reopened.get(BUCKET, KEY) == b"persisted"
    assert await reopened.list(BUCKET) == [KEY]


async def test_a_relative_root_is_fixed_when_the_store_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    store = FileObjectStore()  # the default root: .ceap in the working folder

    monkeypatch.chdir(tmp_path / "second")
    await store.put(BUCKET, KEY, b"x")

    assert (tmp_path / "first" / ".ceap" / "buckets" / BUCKET / KEY).exists()
    assert not (tmp_path / "second" / ".ceap").exists()


async def test_objects_written_by_hand_are_readable_and_listed(store: FileObjectStore, tmp_path: Path) -> None:
    source = tmp_path / ".ceap" / "buckets" / BUCKET / "inputs" / "orders.csv"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"customerId,orderId\nc-1,o-1\n")

    assert await store.list(BUCKET) == ["inputs/orders.csv"]
    assert await store.get(BUCKET, "inputs/orders.csv") == b"customerId,orderId\nc-1,o-1\n"


@pytest.mark.parametrize("inline_write_limit", [0, 1 << 30], ids=["threaded-write", "inline-write"])
@pytest.mark.parametrize("inline_read_limit", [0, 1 << 30], ids=["threaded-read", "inline-read"])
async def test_inline_and_threaded_io_store_the_same(
    store: FileObjectStore, inline_write_limit: int, inline_read_limit: int
) -> None:
    store.inline_write_limit = inline_write_limit
    store.inline_read_limit = inline_read_limit
    data = os.urandom(300 * 1024)

    await store.put(BUCKET, KEY, data)

    assert await store.get(BUCKET, KEY) == data
    assert files_under(store.root) == [f"buckets/{BUCKET}/{KEY}"]


# -- atomic writes ------------------------------------------------------------


@pytest.fixture
def file_size_limit() -> Iterator[None]:
    """Make writes past 1 MiB fail with EFBIG, as a full disk would fail them mid-file."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


async def test_a_write_that_fails_midway_leaves_the_old_object_and_no_temp_file(
    store: FileObjectStore, file_size_limit: None
) -> None:
    await store.put(BUCKET, KEY, b"old version")

    with pytest.raises(StorageError, match=f"could not write s3://{BUCKET}/{KEY}"):
        await store.put(BUCKET, KEY, b"n" * (3 * 1024 * 1024))

    assert await store.get(BUCKET, KEY) == b"old version"
    assert files_under(store.root) == [f"buckets/{BUCKET}/{KEY}"]


async def test_a_first_write_that_fails_midway_leaves_no_object(store: FileObjectStore, file_size_limit: None) -> None:
    with pytest.raises(StorageError):
        await store.put(BUCKET, KEY, b"n" * (3 * 1024 * 1024))

    with pytest.raises(ObjectNotFound):
        await store.get(BUCKET, KEY)
    assert await store.list(BUCKET) == []
    assert files_under(store.root) == []


async def test_readers_never_see_a_partial_object_while_it_is_rewritten(store: FileObjectStore) -> None:
    size = 4 * 1024 * 1024
    versions = [bytes([n]) * size for n in range(1, 4)]
    await store.put(BUCKET, KEY, versions[0])
    store.inline_read_limit = 0  # read in threads too, so reads overlap the writes

    async def writer() -> None:
        for _ in range(4):
            for version in versions:
                await store.put(BUCKET, KEY, version)

    async def reader() -> list[bytes]:
        return [await store.get(BUCKET, KEY) for _ in range(20)]

    _, *reads = await asyncio.gather(writer(), reader(), reader())

    for data in (d for batch in reads for d in batch):
        assert data in versions  # whole, one version: never empty, short or mixed


async def test_files_of_writes_in_progress_are_not_listed(store: FileObjectStore) -> None:
    await store.put(BUCKET, KEY, b"x")
    folder = store.path_of(BUCKET, KEY).parent
    (folder / f"{TEMP_FILE_PREFIX}0123456789abcdef").write_bytes(b"half a wr")
    (folder.parent / f"{TEMP_FILE_PREFIX}fedcba9876543210").write_bytes(b"")

    assert await store.list(BUCKET) == [KEY]
    assert await store.list(BUCKET, "executions/e-1/ETL/.ceap") == []


@pytest.mark.parametrize("key", [f"{TEMP_FILE_PREFIX}x", f"executions/e-1/{TEMP_FILE_PREFIX}0123456789abcdef"])
async def test_keys_named_like_temp_files_are_refused(store: FileObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey, match="reserves for writes in progress"):
        await store.put(BUCKET, key, b"x")
    with pytest.raises(InvalidKey):
        await store.get(BUCKET, key)
    with pytest.raises(InvalidKey):
        await store.delete(BUCKET, key)


# -- paths that must stay inside the bucket -------------------------------------


async def test_a_symlink_out_of_the_bucket_is_refused(store: FileObjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    bucket_folder = store.root / "buckets" / BUCKET
    bucket_folder.mkdir(parents=True)
    (bucket_folder / "link").symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidKey, match="resolves outside its bucket folder"):
        await store.get(BUCKET, "link/secret.txt")
    with pytest.raises(InvalidKey, match="resolves outside its bucket folder"):
        await store.put(BUCKET, "link/planted.txt", b"x")
    with pytest.raises(InvalidKey, match="resolves outside its bucket folder"):
        await store.delete(BUCKET, "link/secret.txt")

    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert await store.list(BUCKET) == []
    assert await store.list(BUCKET, "link/") == []


async def test_a_symlink_to_another_bucket_is_refused(store: FileObjectStore) -> None:
    await store.put("ceap-other", "secret.json", b"{}")
    bucket_folder = store.root / "buckets" / BUCKET
    bucket_folder.mkdir(parents=True)
    (bucket_folder / "other").symlink_to(store.root / "buckets" / "ceap-other", target_is_directory=True)

    with pytest.raises(InvalidKey):
        await store.get(BUCKET, "other/secret.json")


async def test_traversal_keys_never_touch_the_disk(store: FileObjectStore, tmp_path: Path) -> None:
    for key in ["../../../escape.txt", "/tmp/escape.txt", "a/../../escape.txt", "a\\..\\..\\escape.txt"]:
        with pytest.raises(InvalidKey):
            await store.put(BUCKET, key, b"x")

    assert list(tmp_path.rglob("escape.txt")) == []
    assert not store.root.exists()


async def test_files_with_names_that_are_no_valid_key_are_not_listed(store: FileObjectStore) -> None:
    await store.put(BUCKET, "good.json", b"{}")
    bucket_folder = store.root / "buckets" / BUCKET
    (bucket_folder / "back\\slash").write_bytes(b"")
    (bucket_folder / "new\nline").write_bytes(b"")

    assert await store.list(BUCKET) == ["good.json"]


# -- what a file system cannot hold -----------------------------------------------


async def test_a_key_under_an_existing_object_is_refused_naming_the_object(store: FileObjectStore) -> None:
    await store.put(BUCKET, "executions/e-1", b"an object, not a folder")

    with pytest.raises(StorageError, match="'executions/e-1' is already an object"):
        await store.put(BUCKET, "executions/e-1/ETL/output.json", b"x")

    assert await store.list(BUCKET) == ["executions/e-1"]


async def test_a_key_that_is_a_folder_of_other_keys_is_refused(store: FileObjectStore) -> None:
    await store.put(BUCKET, "executions/e-1/ETL/output.json", b"x")

    with pytest.raises(StorageError, match="other keys live under 'executions/e-1/'"):
        await store.put(BUCKET, "executions/e-1", b"y")

    assert await store.list(BUCKET) == ["executions/e-1/ETL/output.json"]
    assert files_under(store.root) == [f"buckets/{BUCKET}/executions/e-1/ETL/output.json"]


async def test_a_root_that_is_a_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_bytes(b"")
    store = FileObjectStore(tmp_path / "not-a-folder")

    with pytest.raises(StorageError, match="point the store at another root folder"):
        await store.put(BUCKET, KEY, b"x")


async def test_a_segment_too_long_for_the_file_system_says_so(store: FileObjectStore) -> None:
    key = "executions/" + "e" * 300 + "/output.json"  # a valid S3 key; ext4 and APFS allow 255 bytes a name

    with pytest.raises(StorageError, match="longer than the file system allows"):
        await store.put(BUCKET, key, b"x")


async def test_delete_removes_folders_it_leaves_empty(store: FileObjectStore) -> None:
    await store.put(BUCKET, "executions/e-1/ETL/output.json", b"x")
    await store.put(BUCKET, "executions/e-2/ETL/output.json", b"y")

    await store.delete(BUCKET, "executions/e-1/ETL/output.json")

    bucket_folder = store.root / "buckets" / BUCKET
    assert not (bucket_folder / "executions" / "e-1").exists()
    assert (bucket_folder / "executions" / "e-2" / "ETL" / "output.json").exists()
    assert bucket_folder.is_dir()


async def test_delete_of_a_folder_name_deletes_nothing(store: FileObjectStore) -> None:
    await store.put(BUCKET, KEY, b"x")

    await store.delete(BUCKET, "executions/e-1")

    assert await store.get(BUCKET, KEY) == b"x"


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_temp_files_of_interrupted_writes_are_removed_on_the_next_open(tmp_path: Path) -> None:
    import os
    import time

    first = FileObjectStore(tmp_path)
    await first.put(BUCKET, KEY, b"kept")
    folder = first.path_of(BUCKET, KEY).parent
    orphan = folder / f"{TEMP_FILE_PREFIX}{_dead_pid()}-0123456789abcdef"  # what kill -9 mid-write leaves
    orphan.write_bytes(b"x" * 1_000_000)
    in_progress = folder / f"{TEMP_FILE_PREFIX}{os.getpid()}-fedcba9876543210"  # a live writer's
    in_progress.write_bytes(b"half")
    old_style_young = folder / f"{TEMP_FILE_PREFIX}00112233aabbccdd"
    old_style_young.write_bytes(b"")
    old_style_stale = folder.parent / f"{TEMP_FILE_PREFIX}ddccbbaa33221100"
    old_style_stale.write_bytes(b"")
    an_hour_ago = time.time() - 3700
    os.utime(old_style_stale, (an_hour_ago, an_hour_ago))

    reopened = FileObjectStore(tmp_path)

    assert sorted(reopened.removed_temp_files) == sorted([orphan, old_style_stale])
    assert not orphan.exists() and not old_style_stale.exists()
    assert in_progress.exists() and old_style_young.exists()
    assert await reopened.get(BUCKET, KEY) == b"kept"
    assert FileObjectStore(tmp_path).removed_temp_files == []


async def test_a_write_names_its_temp_file_after_the_writing_process(tmp_path: Path) -> None:
    import os

    store = FileObjectStore(tmp_path)
    await store.put(BUCKET, KEY, b"x")  # creates the folder
    folder = store.path_of(BUCKET, KEY).parent
    seen: list[str] = []
    original = os.replace

    def spy(src, dst):  # type: ignore[no-untyped-def]
        seen.append(os.path.basename(src))
        return original(src, dst)

    os.replace = spy  # the OS call, not our code: the file name is what a later open reads
    try:
        await store.put(BUCKET, KEY, b"y")
    finally:
        os.replace = original
    assert seen and seen[0].startswith(f"{TEMP_FILE_PREFIX}{os.getpid()}-")
    assert [p.name for p in folder.iterdir()] == [KEY.rpartition("/")[2]]
