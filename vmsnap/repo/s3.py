"""The repository in an S3-compatible bucket, through boto3.

Each object of the repository is the key ``prefix + name`` (see
vmsnap-format(5), OBJECT STORES).  A PUT is atomic on every S3 store, so
there are no temporary objects; an object above 64 MiB (only the manifest of
a volume of many terabytes) goes up as a multipart upload, which S3 also
makes visible whole or not at all.  boto3's standard retry mode retries
throttling, 5xx answers and broken connections with exponential backoff
(8 attempts, or $AWS_MAX_ATTEMPTS); what still fails becomes one of our
errors here, and only here: refused credentials 18, an endpoint that does not
answer 19, a missing bucket 9 (as a missing folder), anything else 9.
"""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from vmsnap.errors import (
    AccessDeniedError,
    DestinationError,
    ExistsError,
    UnreachableError,
    UsageError,
    VmsnapError,
)
from vmsnap.repo.backend import Listed, ObjectMissing
from vmsnap.repo.layout import CONFIG, check_name
from vmsnap.repo.location import S3Options, S3Url
from vmsnap.repo.repository import Repository, init_repository, open_repository

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LARGE = 64 << 20  # objects above this go up in parts
ATTEMPTS = 8
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_DENIED = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed",
    "InvalidClientTokenId", "AllAccessDisabled", "Forbidden", "403",
}  # fmt: skip
_MISSING = {"NoSuchKey", "404", "NotFound"}
_UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)
T = TypeVar("T")


def client(options: S3Options) -> S3Client:
    """A client for the options; what they leave out comes from boto3's usual
    places ($AWS_*, ~/.aws, instance roles).  Clients are thread-safe."""
    try:
        session = boto3.session.Session(
            profile_name=options.profile,
            aws_access_key_id=options.access_key_id,
            aws_secret_access_key=options.secret_access_key,
            region_name=options.region,
        )
    except botocore.exceptions.ProfileNotFound as exc:
        raise UsageError(f"[s3] profile: {exc}") from None
    retries: dict[str, object] = {"mode": "standard"}
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        retries["max_attempts"] = ATTEMPTS
    config = botocore.config.Config(
        retries=retries,  # type: ignore[arg-type]
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=32,
        s3={"addressing_style": options.addressing_style or "auto"},  # type: ignore[arg-type]
        # stores other than AWS (older Ceph RGW, SeaweedFS, Garage) refuse the
        # CRC trailers boto3 adds by default since 1.36; the chunk ids are
        # our own checksum, verified on every read
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client("s3", endpoint_url=options.endpoint_url, config=config)


class S3Backend:
    """Named, immutable objects in a bucket, under a prefix."""

    remote = True

    def __init__(self, url: S3Url) -> None:
        self.url = url
        self.location = str(url)
        self.client = client(url.options)
        self.endpoint = self.client.meta.endpoint_url

    def _key(self, name: str) -> str:
        check_name(name)
        return self.url.prefix + name

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self.error(exc, what) from exc

    def error(self, exc: Exception, what: str) -> VmsnapError:
        """Our error for what boto3 raised while doing ``what``: one line."""
        where = f"{self.location} ({self.endpoint})"
        if isinstance(exc, botocore.exceptions.NoCredentialsError | _PARTIAL):
            return AccessDeniedError(
                f"{where}: no credentials for the object store",
                hint="set access_key_id and secret_access_key in [s3], or AWS_ACCESS_KEY_ID",
            )
        if isinstance(exc, _UNREACHABLE):
            return UnreachableError(f"{where}: the object store did not answer ({what})")
        if isinstance(exc, botocore.exceptions.ClientError):
            code, message = _code(exc), _message(exc)
            if code == "NoSuchBucket":
                return DestinationError(
                    f"{where}: bucket {self.url.bucket} does not exist",
                    hint="vmsnap does not create buckets; create it with your store's tools",
                )
            if code in _DENIED:
                return AccessDeniedError(f"{where}: {what}: refused ({code}: {message})")
            return DestinationError(f"{where}: {what} failed ({code}: {message})")
        return DestinationError(f"{where}: {what} failed: {exc}")

    def put(self, name: str, data: bytes) -> None:
        key = self._key(name)
        if len(data) <= LARGE:
            self._call(
                f"write {name}",
                lambda: self.client.put_object(Bucket=self.url.bucket, Key=key, Body=data),
            )
            return
        parts = TransferConfig(multipart_threshold=LARGE, multipart_chunksize=LARGE)
        self._call(
            f"write {name}",
            lambda: self.client.upload_fileobj(
                io.BytesIO(data), self.url.bucket, key, Config=parts
            ),
        )

    def get(self, name: str) -> bytes:
        key = self._key(name)
        try:
            answer = self.client.get_object(Bucket=self.url.bucket, Key=key)
            return answer["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _MISSING:
                raise ObjectMissing(f"{self.location}: no object {name}") from None
            raise self.error(exc, f"read {name}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self.error(exc, f"read {name}") from exc

    def exists(self, name: str) -> bool:
        key = self._key(name)
        try:
            self.client.head_object(Bucket=self.url.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise self.error(exc, f"look up {name}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self.error(exc, f"look up {name}") from exc
        return True

    def list(self, prefix: str) -> Iterator[Listed]:
        """A page (1000 keys) at a time: memory stays bounded."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.url.bucket, Prefix=self.url.prefix + prefix
        )
        skip = len(self.url.prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    key, size, when = item["Key"], item["Size"], item["LastModified"]
                    yield Listed(key[skip:], size, when.timestamp())
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self.error(exc, f"list {prefix or 'objects'}") from exc

    def delete(self, name: str) -> None:
        key = self._key(name)
        self._call(
            f"delete {name}", lambda: self.client.delete_object(Bucket=self.url.bucket, Key=key)
        )

    def delete_many(self, names: Iterable[str]) -> None:
        """Delete objects in batches of a thousand (one request each)."""
        batch: builtins.list[str] = []
        for name in names:
            batch.append(self._key(name))
            if len(batch) == DELETE_BATCH:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: Sequence[str]) -> None:
        answer = self._call(
            f"delete {len(keys)} objects",
            lambda: self.client.delete_objects(
                Bucket=self.url.bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            ),
        )
        failed = answer.get("Errors", [])
        if failed:
            first = failed[0]
            raise DestinationError(
                f"{self.location}: could not delete {len(failed)} objects, "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )

    def check_bucket(self) -> None:
        """The bucket exists and lets us in (a HEAD has no body, so its errors
        come as bare status codes: 404 is a missing bucket, 403 a refusal)."""
        try:
            self.client.head_bucket(Bucket=self.url.bucket)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _MISSING | {"NoSuchBucket"}:
                raise self.error(_no_such_bucket(exc), "open the bucket") from exc
            raise self.error(exc, "open the bucket") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self.error(exc, "open the bucket") from exc


_PARTIAL = botocore.exceptions.PartialCredentialsError


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    text = str(error.get("Message") or "")
    return " ".join(text.split()) or "no message"


def _no_such_bucket(exc: botocore.exceptions.ClientError) -> botocore.exceptions.ClientError:
    response = dict(exc.response)
    response["Error"] = {"Code": "NoSuchBucket", "Message": "no such bucket"}
    return botocore.exceptions.ClientError(response, exc.operation_name)  # type: ignore[arg-type]


def open_bucket(url: S3Url) -> Repository:
    """The repository in the bucket: the bucket checked first, so that a
    missing one is 9 and a refusal 18 rather than "not a repository"."""
    backend = S3Backend(url)
    backend.check_bucket()
    return open_repository(backend)


def init_bucket(url: S3Url) -> Repository:
    """A new repository under the prefix of an existing bucket, where there
    is no object yet (vmsnap never creates buckets: their region, policy and
    lifecycle are the store administrator's choice)."""
    backend = S3Backend(url)
    backend.check_bucket()
    if backend.exists(CONFIG):
        raise ExistsError(f"{url} is a vmsnap repository already")
    if next(iter(backend.list("")), None) is not None:
        raise DestinationError(
            f"{url} is not empty; a repository starts under a prefix that holds no object"
        )
    return init_repository(backend)
