"""The settings of an S3 database, read once for LanceDB and for the check of its
conditional writes (boto3), and what the check leaves in the store.

Each way of naming the store is tested through a recording proxy in front of the S3
server: LanceDB's requests and the check's must reach it, signed with the same
credentials for the same region.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from urllib.parse import urlparse

import pytest

from ml_worker import store
from ml_worker.constants import ENGLISH_MODEL
from ml_worker.exceptions import InvalidInput
from ml_worker.store import object_store
from tests.faults import S3Proxy

# The credential scope of an AWS signature: the key id, then date/region/s3/...
_SCOPE = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/s3/")


def test_options_come_first_then_the_aws_variables():
    settings = object_store.s3_settings(
        {"aws_endpoint": "http://minio:9000", "region": "eu-west-3"},
        {
            "AWS_ENDPOINT_URL": "http://other:9000",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_PROFILE": "ml-worker",  # the files' business, not a setting
            "HOME": "/home/worker",
        },
    )
    assert settings == {
        "aws_endpoint": "http://minio:9000",
        "region": "eu-west-3",
        "aws_access_key_id": "id",
        "aws_secret_access_key": "secret",
    }


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT", "AWS_ENDPOINT_URL"])
def test_an_endpoint_variable_reaches_boto3(variable):
    settings = object_store.s3_settings({}, {variable: "http://minio:9000"})
    args = object_store.boto3_client_args(settings)
    assert args["endpoint_url"] == "http://minio:9000"
    # Nor does boto3 look for one of its own, in its variables or config file.
    assert args["config"].ignore_configured_endpoint_urls


def test_an_endpoint_named_twice_differently_is_refused(monkeypatch):
    twice = {"AWS_ENDPOINT": "http://a:9000", "AWS_ENDPOINT_URL": "http://b:9000"}
    with pytest.raises(InvalidInput, match="AWS_ENDPOINT and AWS_ENDPOINT_URL"):
        object_store.s3_settings({}, twice)
    same = {"AWS_ENDPOINT": "http://a:9000", "AWS_ENDPOINT_URL": "http://a:9000"}
    assert object_store.s3_settings({}, same) == {
        "aws_endpoint": "http://a:9000",
        "aws_endpoint_url": "http://a:9000",
    }
    # Refused on connecting, before LanceDB picks one by the environment's order.
    for name, value in twice.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match="endpoint is named twice"):
        store.connect("s3://bucket/vectors")


def test_storage_options_are_handed_to_boto3_as_lancedb_reads_them():
    args = object_store.boto3_client_args(
        {
            "AWS_ENDPOINT": "http://minio:9000",
            "default_region": "us-east-1",
            "region": "eu-west-3",
            "access_key_id": "id",
            "aws_secret_access_key": "secret",
            "token": "session",
            "allow_http": "true",
            "virtual_hosted_style_request": "true",
        }
    )
    config = args.pop("config")
    assert args == {
        "endpoint_url": "http://minio:9000",
        "region_name": "eu-west-3",  # a region before a default one
        "aws_access_key_id": "id",
        "aws_secret_access_key": "secret",
        "aws_session_token": "session",
    }
    assert config.s3 == {"addressing_style": "virtual"}
    assert object_store.boto3_client_args({})["config"].s3 == {
        "addressing_style": "path"
    }
    assert object_store.boto3_client_args({"aws_default_region": "eu-west-1"})[
        "region_name"
    ] == ("eu-west-1")


@pytest.fixture
def versioned_bucket(s3):
    """A fresh bucket that keeps every version of its objects."""
    client = s3.client()
    with s3.bucket() as name:
        client.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": "Enabled"}
        )
        yield name
        # Emptied of its versions, the bucket can be deleted.
        listed = client.list_object_versions(Bucket=name)
        kept = listed.get("Versions", []) + listed.get("DeleteMarkers", [])
        if kept:
            client.delete_objects(
                Bucket=name,
                Delete={
                    "Objects": [
                        {"Key": v["Key"], "VersionId": v["VersionId"]} for v in kept
                    ]
                },
            )


@pytest.fixture
def proxy(s3):
    url = urlparse(s3.url)
    if url.scheme != "http":
        pytest.skip("the recording proxy speaks plain HTTP only")
    proxy = S3Proxy(url.hostname, url.port)
    yield proxy
    proxy.close()


@pytest.fixture
def no_aws_settings(monkeypatch, tmp_path):
    """An environment without AWS settings, nor AWS files."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def _settings(way: str, s3, proxy_url: str, tmp_path) -> tuple[dict, dict]:
    """(storage options, environment variables) naming the store one way."""
    keys = {
        "AWS_ACCESS_KEY_ID": s3.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
        "AWS_REGION": s3.region,
    }
    if way == "storage options":
        return s3.storage_options(proxy_url), {}
    if way in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        return {}, {way: proxy_url, "AWS_ALLOW_HTTP": "true", **keys}
    # Credentials and region in the AWS files, under a profile; the endpoint in
    # the variable boto3 alone ignores, another in the config file, which LanceDB
    # ignores.
    credentials, config = tmp_path / "credentials", tmp_path / "config"
    credentials.write_text(
        "[default]\naws_access_key_id = not-this-profile\n"
        "aws_secret_access_key = not-this-profile\n"
        f"[ml-worker]\naws_access_key_id = {s3.access_key_id}\n"
        f"aws_secret_access_key = {s3.secret_access_key}\n"
    )
    config.write_text(
        "[default]\nregion = ap-south-1\n"
        f"[profile ml-worker]\nregion = {s3.region}\n"
        "endpoint_url = http://127.0.0.1:9\n"
    )
    return {}, {
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_CONFIG_FILE": str(config),
        "AWS_PROFILE": "ml-worker",
        "AWS_ENDPOINT": proxy_url,
        "AWS_ALLOW_HTTP": "true",
    }


@pytest.mark.usefixtures("no_aws_settings")
@pytest.mark.parametrize(
    "way", ["storage options", "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS files"]
)
def test_lancedb_and_the_check_reach_the_store_alike(
    way, s3, s3_bucket, proxy, tmp_path, monkeypatch
):
    options, environment = _settings(way, s3, proxy.url, tmp_path)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    db = store.connect(f"s3://{s3_bucket}/vectors", storage_options=options)
    store.open_or_create_table(db, "p", model=ENGLISH_MODEL, embed_batch_size=8)

    scopes: dict[str, set[tuple[str, str]]] = {"boto3": set(), "lancedb": set()}
    checks = 0
    for method, path, sent in proxy.requests:
        headers = {name.lower(): value for name, value in sent.items()}
        client = "boto3" if "Boto3" in headers.get("user-agent", "") else "lancedb"
        found = _SCOPE.search(headers.get("authorization", ""))
        assert found, f"an unsigned request of {client}: {method} {path}"
        scopes[client].add((found[1], found[2]))
        checks += client == "boto3" and method == "PUT" and "if-none-match" in headers
    assert checks == 1, "the check's conditional PUT did not reach the store"
    assert scopes["boto3"] == scopes["lancedb"] == {(s3.access_key_id, s3.region)}


def test_the_check_leaves_nothing_in_a_versioned_bucket(s3, versioned_bucket, tmp_path):
    uri = f"s3://{versioned_bucket}/vectors"
    options = s3.storage_options()
    db = store.connect(uri, storage_options=options)
    store.open_or_create_table(db, "p", model=ENGLISH_MODEL, embed_batch_size=8)
    client = s3.client()

    def versions() -> list[tuple[str, str]]:
        listed = client.list_object_versions(Bucket=versioned_bucket)
        assert not listed.get("DeleteMarkers"), "something was deleted"
        return sorted((v["Key"], v["VersionId"]) for v in listed.get("Versions", []))

    created = versions()
    # The table's own files, each written once: no probe object, no rewrite.
    assert all(key.startswith("vectors/p.lance/") for key, _ in created)
    assert len({key for key, _ in created}) == len(created)
    # Another process checks the store again, before its first write.
    script = f"""
from ml_worker import store
db = store.connect({uri!r}, storage_options={options!r})
store.writable_table(db, "p")
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert versions() == created
