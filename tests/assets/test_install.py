"""The asset installer: cache filling, .deb unpacking, apt-get's update retry, errors, the real Debian fetch."""

import io
import tarfile
from pathlib import Path

import pytest

from lemo.assets import install
from lemo.assets.austen import NOVELS, austen_texts

SHARED_AUSTEN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "austen"


def _fake_texts() -> dict[str, str]:
    return {n: f"{n.upper()}\n\nBy Jane Austen\n" for n in NOVELS}


@pytest.fixture(autouse=True)
def _no_env_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEMO_AUSTEN_DIR", raising=False)


def test_install_once_then_read_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(install, "fetch_debian_texts", lambda: calls.append(1) or _fake_texts())
    folder = install.install_austen(tmp_path)
    assert folder == tmp_path / "austen"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.txt" for n in NOVELS)
    assert install.install_austen(tmp_path) == folder  # installed: nothing fetched again
    assert calls == [1]
    install.install_austen(tmp_path, force=True)
    assert calls == [1, 1]
    corpus = austen_texts(tmp_path)
    assert corpus.source == "debian:r-cran-janeaustenr" and corpus.texts == _fake_texts()


def test_installer_follows_lemo_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEMO_CACHE", str(tmp_path))
    monkeypatch.setattr(install, "fetch_debian_texts", _fake_texts)
    assert install.main(["austen"]) == 0
    assert (tmp_path / "austen" / "emma.txt").read_text(encoding="utf-8") == _fake_texts()["emma"]


def test_installer_installs_everything_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    done = []
    monkeypatch.setattr(install, "install_austen", lambda force=False: done.append("austen") or Path("a"))
    monkeypatch.setattr("lemo.assets.smollm2.smollm2_dir", lambda: done.append("smollm2") or Path("s"))
    assert install.main([]) == 0
    assert done == ["austen", "smollm2"]
    with pytest.raises(SystemExit):
        install.main(["weights"])


def test_installer_without_apt_get_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("LEMO_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # no apt-get to be found: the real fetch code fails early
    assert install.main(["austen"]) == 1
    assert "apt-get not found" in capsys.readouterr().err
    assert not (tmp_path / "austen").exists()


def _ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


@pytest.mark.parametrize("compression", ["gz", "xz"])
def test_extract_rdata_from_deb(tmp_path: Path, compression: str) -> None:
    payload = {".rdx": b"index bytes", ".rdb": b"odd-length database"}
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode=f"w:{compression}") as tar:
        for ext, data in payload.items():
            info = tarfile.TarInfo(f"./usr/lib/R/site-library/janeaustenr/data/Rdata{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    deb = _ar(
        {"debian-binary": b"2.0\n", "control.tar.xz": b"abc", f"data.tar.{compression}": tar_bytes.getvalue()}
    )
    stem = install._extract_rdata(deb, tmp_path)
    assert stem == tmp_path / "Rdata"
    assert {ext: stem.with_suffix(ext).read_bytes() for ext in payload} == payload


def test_bad_deb_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an ar archive"):
        install._extract_rdata(b"PK\x03\x04", tmp_path)
    with pytest.raises(ValueError, match=r"no data\.tar"):
        install._extract_rdata(_ar({"debian-binary": b"2.0\n"}), tmp_path)


FAKE_APT = """#!/bin/sh
# Fails like apt-get without package lists until `update` has run.
if [ "$1" = update ]; then touch "$STATE/updated"; exit 0; fi
if [ ! -e "$STATE/updated" ]; then echo "E: Unable to locate package $2" >&2; exit 100; fi
echo deb > r-cran-janeaustenr_1.0.0-1_all.deb
"""


@pytest.mark.parametrize("root", [True, False])
def test_apt_update_once_when_lists_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: bool
) -> None:
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    work.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("STATE", str(tmp_path))
    monkeypatch.setattr(install.os, "geteuid", lambda: 0 if root else 1000, raising=False)
    if root:
        assert install._apt_download(work).name == "r-cran-janeaustenr_1.0.0-1_all.deb"
    else:  # only root may run `apt-get update`; the error keeps apt's own message
        with pytest.raises(RuntimeError, match="Unable to locate package"):
            install._apt_download(work)


def test_real_debian_fetch(tmp_path: Path) -> None:
    # `make install` runs this installer (apt-get and the dev extras with rdata are required there), so a
    # machine that passes `make install` must pass this: no skip.
    install.install_austen(tmp_path)
    corpus = austen_texts(tmp_path)
    assert corpus.source == "debian:r-cran-janeaustenr"
    assert set(corpus.texts) == set(NOVELS)
    assert "Emma Woodhouse" in corpus.texts["emma"]
    assert "Elizabeth Bennet" in corpus.texts["prideprejudice"]
    for name, text in corpus.texts.items():
        assert 400_000 < len(text) < 900_000, name
    if SHARED_AUSTEN.is_dir():  # the extracted copies beside the repo must be byte-identical
        for name, text in corpus.texts.items():
            assert text == (SHARED_AUSTEN / f"{name}.txt").read_text(encoding="utf-8"), name
