"""``optrun data fetch NAME``: a set's files, downloaded from where its authors publish them (or a mirror), each
checked against the MD5 checksum published with it, into optrun's data cache, where runs look for them.

Every file is written beside its place and moved into it only once its checksum holds, so a download cut short
or altered leaves nothing a run would read. A file already there with the right checksum is kept.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from optrun.data.files import cache_folder
from optrun.schema import ConfigError

SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}),
}
"""Each set that can be fetched: the address its files are published at, and each file's published MD5."""

CHUNK = 1 << 20


def md5_of(path: Path) -> str:
    digest = hashlib.md5()  # the checksum the sets publish: it finds a download cut short or altered
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    name: str,
    folder: Path | None = None,
    mirror: str | None = None,
    on_file: Callable[[str, int, bool], None] | None = None,
) -> Path:
    """Download set ``name``'s files into ``folder`` (its folder in optrun's data cache where not given) from its
    published address or ``mirror``; ``on_file(file, size, downloaded)`` after each file. The folder; ConfigError,
    in one line, for an unknown set, a file that cannot be downloaded, or one whose checksum is not the published."""
    if name not in SOURCES:
        raise ConfigError(f"no set named {name!r} to fetch; choose from: {', '.join(SOURCES)}")
    address, files = SOURCES[name]
    if mirror is not None and "://" not in mirror and Path(mirror).is_dir():  # a folder that holds the files
        mirror = Path(mirror).resolve().as_uri()
    base = (mirror or address).rstrip("/") + "/"
    folder = folder or cache_folder() / name
    made = not folder.exists()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: is a file, not a folder for the files")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot be made ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{folder}: cannot be written (permission denied)")
    try:
        for file, md5 in files.items():
            target = folder / file
            fresh = not (target.is_file() and md5_of(target) == md5)
            if fresh:
                _download(base + file, target, md5)
            if on_file is not None:
                on_file(file, target.stat().st_size, fresh)
    except BaseException:
        if made and not any(folder.iterdir()):
            folder.rmdir()  # nothing fetched: no trace
        raise
    return folder


def _download(url: str, target: Path, md5: str) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            while block := response.read(CHUNK):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != md5:
            raise ConfigError(f"{url}: its MD5 is {digest.hexdigest()}, the published one {md5}; nothing is kept")
        os.replace(partial, target)
    except ConfigError:
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: not a URL
        reason = str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc).splitlines()[0]
        reason = reason or type(exc).__name__
        raise ConfigError(f"{url}: cannot be downloaded ({reason})") from None
    finally:
        partial.unlink(missing_ok=True)
