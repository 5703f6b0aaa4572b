"""Settings come from flags over environment; the file blob store is content-addressed and durable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from litemx.errors import InvalidRequest
from litemx.settings import Settings
from litemx.storage.blobs import FileBlobStore


def test_flags_override_the_environment_which_overrides_defaults(tmp_path: Path) -> None:
    env = {"LITEMX_HTTP": "127.0.0.1:9000", "LITEMX_SMTP": "0.0.0.0:2626", "LITEMX_DNS_SERVERS": "127.0.0.1:53, [::1]:5353",
           "LITEMX_MX_PORT": "2500", "LITEMX_DATA_DIR": str(tmp_path)}
    s = Settings.load(env, http="127.0.0.1:9100")
    assert s.http_host_port == ("127.0.0.1", 9100)
    assert s.smtp_host_port == ("0.0.0.0", 2626)
    assert s.dns_servers == ("127.0.0.1:53", "[::1]:5353")
    assert s.mx_port == 2500 and s.data_dir == tmp_path
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'litemx.db').resolve()}"


def test_the_defaults_are_the_embedded_ones() -> None:
    s = Settings.load({})
    assert (s.http, s.smtp, s.data_dir, s.database_url, s.blob_url) == (
        "127.0.0.1:8025", "127.0.0.1:2525", Path("data"), "", "")


@pytest.mark.parametrize("env", [{"LITEMX_HTTP": "nonsense"}, {"LITEMX_MX_PORT": "twenty-five"},
                                 {"LITEMX_SMTP": "127.0.0.1:70000"}])
def test_a_bad_setting_is_a_clear_error_naming_it(env: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest) as err:
        Settings.load(env)
    assert err.value.details["field"] in {"http", "mx_port", "smtp"}


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings.load({}).http = "x"  # type: ignore[misc]


def test_blobs_are_keyed_by_their_sha256_and_stored_once(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    key = store.put(b"hello")
    assert key == hashlib.sha256(b"hello").hexdigest()
    assert store.put(b"hello") == key
    assert store.get(key) == b"hello" and store.exists(key)
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def test_deleting_a_blob_removes_it_and_a_second_delete_is_harmless(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    key = store.put(b"bytes")
    assert store.delete(key) is True
    assert store.delete(key) is False and not store.exists(key)
    with pytest.raises(KeyError):
        store.get(key)


def test_a_key_that_is_not_a_digest_can_never_escape_the_store(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    for bad in ("../../etc/passwd", "a" * 63, "Z" * 64):
        with pytest.raises(KeyError):
            store.get(bad)
        assert store.exists(bad) is False


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    for i in range(20):
        store.put(f"message {i}".encode())
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_every_directory_a_put_creates_is_fsynced_into_its_parent_before_put_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from litemx.storage import blobs

    synced: list[Path] = []
    real = blobs._fsync_dir
    monkeypatch.setattr(blobs, "_fsync_dir", lambda path: (synced.append(Path(path)), real(path))[1])
    store = FileBlobStore(tmp_path / "blobs")
    key = store.put(b"acknowledged message")
    root = tmp_path / "blobs"
    # the root's entry, ab/'s entry (in root), ab/cd/'s entry (in ab/), the blob's entry (in ab/cd/)
    assert synced == [tmp_path, root, root / key[:2], root / key[:2] / key[2:4]]
    synced.clear()
    store.put(b"acknowledged message")  # already stored: its directory entry is made durable again
    assert synced == [root / key[:2] / key[2:4]]
