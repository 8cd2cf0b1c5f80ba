"""Atomic, verified, resumable downloads of model files.

    download(url, target, sha256=..., size=..., progress=lambda done, total: ...)

The bytes go to ``target.part``; a later call resumes it with an HTTP Range request (or starts over when
the server ignores Range). Only a file whose size and SHA-256 match is renamed to ``target``; a mismatch
deletes the part file, so nothing wrong is ever left behind under the final name.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]


class DownloadError(Exception):
    """A download failed; ``str()`` says why. A resumable part file may remain."""


class HashMismatch(DownloadError):
    """The downloaded file is not the one the registry names (nothing is kept)."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    target: Path,
    sha256: str | None,
    size: int | None = None,
    progress: Progress | None = None,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
) -> Path:
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    own = client is None
    client = client or httpx.Client(timeout=timeout, follow_redirects=True)
    try:
        _fetch(client, url, part, size, progress)
    finally:
        if own:
            client.close()
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise HashMismatch(f"{url}: got {got} bytes, expected {size}; the file was discarded")
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise HashMismatch(f"{url}: SHA-256 is {digest}, expected {sha256}; the file was discarded")
    os.replace(part, target)
    log.info("downloaded %s (%d bytes, sha256 %s)", target.name, got, digest[:12])
    return target


def _fetch(client: httpx.Client, url: str, part: Path, size: int | None, progress: Progress | None) -> None:
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        have = 0  # a part file longer than the model cannot be a prefix of it
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 416 and have:  # already complete
                return
            if resp.status_code not in (200, 206):
                raise DownloadError(f"{url}: HTTP {resp.status_code}")
            resume = resp.status_code == 206 and have > 0
            if have and not resume:
                log.info("%s: the server ignored the range request; starting over", url)
            done = have if resume else 0
            length = resp.headers.get("content-length")
            total = done + int(length) if length is not None else size
            with open(part, "ab" if resume else "wb") as fh:
                for chunk in resp.iter_bytes(1 << 16):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
    except httpx.HTTPError as exc:
        raise DownloadError(f"{url}: transfer interrupted ({exc}); run it again to resume") from exc
