"""The S3 harness itself, with plain boto3: the SeaweedFS server is a real S3
store (objects, identities, errors), survives a kill, and each fault of the
proxy reaches a client as the fault it stands for."""

from __future__ import annotations

import http.client
import io
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "objstore"))
from faultproxy import FaultProxy
from seaweed import Seaweed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1 << 20


def error_code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return info.value.response.get("Error", {}).get("Code", "")


def read(client: S3Client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def env_client() -> S3Client:
    """A client of the AWS_* variables as they are now (boto3's default
    session would keep the credentials it found first)."""
    return boto3.session.Session().client("s3")


def test_objects_round_trip_with_only_the_environment(bucket: str, s3env: dict[str, str]) -> None:
    client = env_client()  # endpoint, keys and region from AWS_* alone
    client.put_object(Bucket=bucket, Key="a/one", Body=b"first")
    client.put_object(Bucket=bucket, Key="a/two", Body=b"second")
    assert read(client, bucket, "a/one") == b"first"
    listed = client.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in listed.get("Contents", [])] == ["a/one", "a/two"]
    client.delete_object(Bucket=bucket, Key="a/one")
    listed = client.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in listed.get("Contents", [])] == ["a/two"]


def test_the_reader_may_read_and_list_but_not_write(seaweed: Seaweed, bucket: str) -> None:
    seaweed.client().put_object(Bucket=bucket, Key="k", Body=b"data")
    reader = seaweed.client(readonly=True)
    assert read(reader, bucket, "k") == b"data"
    assert reader.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    with pytest.raises(ClientError) as put:
        reader.put_object(Bucket=bucket, Key="k2", Body=b"no")
    assert error_code(put) == "AccessDenied"
    with pytest.raises(ClientError) as delete:
        reader.delete_object(Bucket=bucket, Key="k")
    assert error_code(delete) == "AccessDenied"
    assert read(reader, bucket, "k") == b"data"


def test_wrong_secret_and_unknown_key_are_refused(
    bucket: str, s3env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ClientError) as wrong_secret:
        env_client().list_objects_v2(Bucket=bucket)
    assert error_code(wrong_secret) == "SignatureDoesNotMatch"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(ClientError) as unknown:
        env_client().list_objects_v2(Bucket=bucket)
    assert error_code(unknown) == "InvalidAccessKeyId"


def test_a_missing_bucket_is_no_such_bucket(seaweed: Seaweed) -> None:
    with pytest.raises(ClientError) as missing:
        seaweed.client().list_objects_v2(Bucket="vmsnap-never-made")
    assert error_code(missing) == "NoSuchBucket"


def test_if_none_match_refuses_to_overwrite(seaweed: Seaweed, bucket: str) -> None:
    """SeaweedFS honours conditional writes: the second put is 412."""
    client = seaweed.client()
    client.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as again:
        client.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert error_code(again) == "PreconditionFailed"
    assert again.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert read(client, bucket, "once") == b"first"


def test_data_survives_a_kill_and_the_same_endpoint_serves_it(
    seaweed: Seaweed, bucket: str
) -> None:
    client = seaweed.client(connect_timeout=1, attempts=1)
    client.put_object(Bucket=bucket, Key="k", Body=b"kept")
    seaweed.kill()
    with pytest.raises(EndpointConnectionError):
        client.get_object(Bucket=bucket, Key="k")
    seaweed.start()
    assert read(client, bucket, "k") == b"kept"


# -- the fault proxy -----------------------------------------------------------


def test_the_proxy_passes_requests_through(
    seaweed: Seaweed, bucket: str, proxy: FaultProxy
) -> None:
    client = seaweed.client(endpoint=proxy.endpoint)
    client.put_object(Bucket=bucket, Key="k", Body=b"through")
    assert read(client, bucket, "k") == b"through"
    assert proxy.requests == [("PUT", f"/{bucket}/k"), ("GET", f"/{bucket}/k")]
    assert not proxy.injected


def test_a_multipart_upload_goes_through_the_proxy(
    seaweed: Seaweed, bucket: str, proxy: FaultProxy
) -> None:
    data = os.urandom(11 * MiB)
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client = seaweed.client(endpoint=proxy.endpoint)
    client.upload_fileobj(io.BytesIO(data), bucket, "big", Config=parts)
    assert read(client, bucket, "big") == data
    uploads = [path for method, path in proxy.requests if method == "PUT" and "partNumber" in path]
    assert len(uploads) == 3


@pytest.mark.parametrize("kind", ["503", "500"])
def test_an_error_answer_is_retried_transparently(
    seaweed: Seaweed, bucket: str, proxy: FaultProxy, kind: str
) -> None:
    client = seaweed.client(endpoint=proxy.endpoint, attempts=3)
    proxy.inject(kind, method="PUT")
    client.put_object(Bucket=bucket, Key="k", Body=b"x" * 1000)
    assert proxy.injected[kind] == 1
    assert proxy.requests == [("PUT", f"/{bucket}/k")] * 2
    assert read(client, bucket, "k") == b"x" * 1000


def test_slow_down_reaches_a_client_without_retries(
    seaweed: Seaweed, bucket: str, proxy: FaultProxy
) -> None:
    proxy.inject("503", times=2, path_re=r"/k$")
    with pytest.raises(ClientError) as slow:
        seaweed.client(endpoint=proxy.endpoint, attempts=2).get_object(Bucket=bucket, Key="k")
    assert error_code(slow) == "SlowDown"
    assert proxy.injected["503"] == 2


def test_a_cut_upload_is_retried_whole(seaweed: Seaweed, bucket: str, proxy: FaultProxy) -> None:
    data = os.urandom(MiB)
    client = seaweed.client(endpoint=proxy.endpoint, attempts=3)
    proxy.inject("cut", method="PUT")
    client.put_object(Bucket=bucket, Key="k", Body=data)
    assert proxy.injected["cut"] == 1
    assert read(client, bucket, "k") == data


def test_a_cut_upload_leaves_no_object(seaweed: Seaweed, bucket: str, proxy: FaultProxy) -> None:
    proxy.inject("cut", method="PUT")
    with pytest.raises(ConnectionClosedError):
        seaweed.client(endpoint=proxy.endpoint, attempts=1).put_object(
            Bucket=bucket, Key="k", Body=os.urandom(MiB)
        )
    with pytest.raises(ClientError) as head:
        seaweed.client().head_object(Bucket=bucket, Key="k")
    assert error_code(head) == "404"


def test_a_stall_times_out_and_is_retried(seaweed: Seaweed, bucket: str, proxy: FaultProxy) -> None:
    proxy.inject("stall", seconds=5)
    with pytest.raises(ReadTimeoutError):
        seaweed.client(endpoint=proxy.endpoint, read_timeout=1, attempts=1).list_objects_v2(
            Bucket=bucket
        )
    proxy.inject("stall", seconds=5)
    listed = seaweed.client(endpoint=proxy.endpoint, read_timeout=1, attempts=2).list_objects_v2(
        Bucket=bucket
    )
    assert listed["KeyCount"] == 0
    assert proxy.injected["stall"] == 2


def test_a_proxy_that_is_down_refuses_quickly_then_comes_back(
    seaweed: Seaweed, bucket: str, proxy: FaultProxy
) -> None:
    client = seaweed.client(endpoint=proxy.endpoint, connect_timeout=1, attempts=1)
    client.put_object(Bucket=bucket, Key="k", Body=b"x")  # a pooled keep-alive connection
    proxy.down()
    began = time.monotonic()
    with pytest.raises(EndpointConnectionError):
        client.get_object(Bucket=bucket, Key="k")
    assert time.monotonic() - began < 3
    proxy.up()
    assert read(client, bucket, "k") == b"x"


def test_the_proxy_frames_chunked_bodies_and_keeps_the_connection(
    bucket: str, proxy: FaultProxy
) -> None:
    """An unsigned chunked PUT (refused by the store, as it should be), then
    a GET on the same connection: both answers come back whole."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    body = iter([b"a" * 1000, b"b" * 70000])
    conn.request("PUT", f"/{bucket}/chunked", body=body, encode_chunked=True)
    put = conn.getresponse()
    assert (put.status, b"AccessDenied" in put.read()) == (403, True)
    conn.request("GET", f"/{bucket}/chunked")
    get = conn.getresponse()
    assert (get.status, b"AccessDenied" in get.read()) == (403, True)
    conn.close()
    assert proxy.requests == [("PUT", f"/{bucket}/chunked"), ("GET", f"/{bucket}/chunked")]
