"""Where a repository is: a local folder, or ``s3://bucket/prefix``.

The text a user gives (``--dest``, ``dest`` in the configuration file) is
parsed here, once, into a :data:`Dest`; :func:`open_dest` and
:func:`init_dest` turn it into a :class:`~vmsnap.repo.repository.Repository`
on the right backend.  boto3 is imported only when a bucket is used (it
costs a noticeable part of a second to import, and local repositories do
not need it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vmsnap.errors import UsageError
from vmsnap.repo.repository import Repository, init_local, open_local

SCHEME = "s3://"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_COMPONENT = re.compile(r"[^/\x00]+")
ADDRESSING = ("auto", "path", "virtual")


@dataclass(frozen=True)
class S3Options:
    """The ``[s3]`` table of the configuration file; what it leaves out, boto3
    takes from its usual places (AWS_* variables, ~/.aws/config and
    credentials, instance roles)."""

    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str | None = None  # auto, path or virtual
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


@dataclass(frozen=True)
class S3Url:
    """A repository in a bucket: its objects are keys ``prefix + name``."""

    bucket: str
    prefix: str  # "" or components ending with "/"
    options: S3Options = field(default_factory=S3Options, compare=False)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")


Dest = Path | S3Url


def is_s3(text: str) -> bool:
    return text.startswith(SCHEME)


def parse(text: str, options: S3Options | None = None) -> Dest:
    """``s3://bucket[/prefix]`` or a folder's path."""
    if not is_s3(text):
        return Path(text)
    bucket, _sep, prefix = text[len(SCHEME) :].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UsageError(f"{text}: {bucket!r} is not a bucket name (3 to 63 of a-z 0-9 . -)")
    parts = prefix.strip("/").split("/") if prefix.strip("/") else []
    if any(not _COMPONENT.fullmatch(p) or p.startswith(".") for p in parts):
        raise UsageError(f"{text}: each part of the prefix is a name, not empty, not dotted")
    return S3Url(bucket, "".join(f"{p}/" for p in parts), options or S3Options())


def open_dest(dest: Dest) -> Repository:
    """The repository at ``dest``; refused as in :func:`open_local` (9, 15, 16),
    and, in a bucket, 18 when the store refuses us and 19 when it does not answer."""
    if isinstance(dest, S3Url):
        from vmsnap.repo import s3  # noqa: PLC0415 - boto3 only when a bucket is used

        return s3.open_bucket(dest)
    return open_local(dest)


def init_dest(dest: Dest) -> Repository:
    """A new repository at ``dest``: a new or empty folder, or an existing bucket
    with no object under the prefix."""
    if isinstance(dest, S3Url):
        from vmsnap.repo import s3  # noqa: PLC0415

        return s3.init_bucket(dest)
    return init_local(dest)
