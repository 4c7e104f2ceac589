"""An ``s3://`` store's settings, read once, and the check, before any write, that
the store keeps concurrent commits.

LanceDB and the check (boto3) must reach the same store as the same client, yet
they read different places: LanceDB takes its endpoint from ``AWS_ENDPOINT`` or
``AWS_ENDPOINT_URL``, boto3 from the latter only, and from an ``endpoint_url`` in
the AWS config file, which LanceDB ignores (with ``AWS_ENDPOINT`` alone, the check
went to AWS and failed). So ``s3_settings`` reads the storage options and the
``AWS_*`` variables once; ``store.connect`` hands the result to LanceDB, and the
check the same values to boto3, told to look for no endpoint of its own. What
neither is given, credentials and region, both read from the AWS credentials and
config files, under ``AWS_PROFILE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import lancedb
from lancedb.table import Table

from ml_worker.exceptions import InvalidInput, UnsafeObjectStore

# LanceDB's S3 storage options (object_store's names and aliases) -> boto3's.
_BOTO3_ARGS = {
    **dict.fromkeys(["aws_access_key_id", "access_key_id"], "aws_access_key_id"),
    **dict.fromkeys(
        ["aws_secret_access_key", "secret_access_key"], "aws_secret_access_key"
    ),
    **dict.fromkeys(
        ["aws_session_token", "aws_token", "session_token", "token"],
        "aws_session_token",
    ),
    **dict.fromkeys(
        ["aws_endpoint", "aws_endpoint_url", "endpoint", "endpoint_url"],
        "endpoint_url",
    ),
    **dict.fromkeys(["aws_region", "region"], "region_name"),
}
# The region when none is given; boto3 has no counterpart.
_DEFAULT_REGION = {"aws_default_region", "default_region"}
_VIRTUAL_HOSTED = {"aws_virtual_hosted_style_request", "virtual_hosted_style_request"}
# What each option sets: an option and an environment variable of one setting.
_SETTING = {
    **_BOTO3_ARGS,
    **dict.fromkeys(_DEFAULT_REGION, "default_region"),
    **dict.fromkeys(_VIRTUAL_HOSTED, "virtual_hosted"),
}
# Lance names the manifest of version v by v's distance to this, so that listing
# finds the newest first (``Table.uses_v2_manifest_paths``), or else by v itself.
_MAX_VERSION = 2**64 - 1

# The S3 buckets (by endpoint) this process found safe to write to.
_SAFE_BUCKETS: set[tuple[str | None, str]] = set()


def s3_settings(
    storage_options: Mapping[str, str], environ: Mapping[str, str]
) -> dict[str, str]:
    """The options of an S3 database: ``storage_options``, and for each setting
    they leave out, the ``AWS_*`` variable of ``environ`` LanceDB reads for it
    (``AWS_ENDPOINT`` or ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``...).

    An endpoint named twice, differently, is refused: of ``AWS_ENDPOINT`` and
    ``AWS_ENDPOINT_URL``, LanceDB takes the first in the process's environment.
    """
    given = {_SETTING.get(k.lower()) for k in storage_options}
    from_env = {
        name: value
        for name, value in environ.items()
        if name.lower().startswith("aws_")
        and _SETTING.get(name.lower()) not in given | {None}
    }
    named = {**storage_options, **from_env}
    endpoints = sorted(k for k in named if _SETTING.get(k.lower()) == "endpoint_url")
    if len({named[k] for k in endpoints}) > 1:
        msg = (
            f"the object store's endpoint is named twice, differently:"
            f" {' and '.join(endpoints)}; name it once"
        )
        raise InvalidInput(msg)
    return {**storage_options, **{k.lower(): v for k, v in from_env.items()}}


def boto3_client_args(settings: Mapping[str, str]) -> dict[str, Any]:
    """boto3 client arguments reaching the store of these ``s3_settings`` as
    LanceDB does.

    ``allow_http`` needs no counterpart: boto3 follows the endpoint's scheme.
    """
    from botocore.config import Config as BotoConfig

    options = {k.lower(): v for k, v in settings.items()}
    args: dict[str, Any] = {
        _BOTO3_ARGS[k]: v for k, v in options.items() if k in _BOTO3_ARGS
    }
    if "region_name" not in args:
        defaults = [v for k, v in options.items() if k in _DEFAULT_REGION]
        if defaults:
            args["region_name"] = defaults[0]
    virtual = any(options.get(k, "").lower() == "true" for k in _VIRTUAL_HOSTED)
    args["config"] = BotoConfig(
        # LanceDB addresses buckets by path unless told otherwise.
        s3={"addressing_style": "virtual" if virtual else "path"},
        # The endpoint is the settings' or AWS's, as LanceDB's: not one boto3 finds
        # in its own variables or config file.
        ignore_configured_endpoint_urls=True,
        connect_timeout=10,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        # Checksums only where S3 requires them, as LanceDB: not every
        # S3-compatible store accepts boto3's default ones.
        request_checksum_calculation="when_required",
    )
    return args


def refuse_unsafe_store(db: lancedb.DBConnection, table: Table) -> None:
    """Fail before the table's first write unless its store keeps concurrent commits.

    On ``s3://``, Lance commits a table version with a conditional PUT of its
    manifest (``If-None-Match: *``): of two writers committing the same version, the
    store must refuse the second. A store that ignores the condition loses commits
    silently (4 appending processes kept 2,810 of 7,000 rows, no error). So the
    table's current manifest, which exists, is PUT again with the condition, with
    its own bytes, once per process and bucket: a store that honours the condition
    refuses (412) and keeps nothing of the request, not even in a versioned bucket;
    one that accepts it fails the write, having rewritten the manifest with what it
    held. ``s3+ddb://`` commits through DynamoDB, ``gs://`` and ``az://`` have native
    preconditions, local paths atomic renames: no check.
    """
    # LanceDB's local table knows its location; its type does not say so.
    url = urlparse(table.uri)  # type: ignore[attr-defined]
    if url.scheme != "s3":
        return
    # Here only: importing boto3 took 0.25 s of every command that reads a table.
    import boto3
    from botocore.exceptions import ClientError

    # LanceDB's local connection keeps its options; its type does not say so.
    client_args = boto3_client_args(getattr(db, "storage_options", None) or {})
    bucket = url.netloc
    if (client_args.get("endpoint_url"), bucket) in _SAFE_BUCKETS:
        return
    # A session of its own reads the AWS files as they are now.
    client = boto3.session.Session().client("s3", **client_args)
    key = f"{url.path.strip('/')}/_versions/{_manifest_name(table)}"
    manifest = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        client.put_object(Bucket=bucket, Key=key, Body=manifest, IfNoneMatch="*")
    except ClientError as e:
        if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 412:
            raise
    else:
        msg = (
            f"the object store of {db.uri} ignores conditional writes (a PUT with"
            f" If-None-Match: * of an existing key succeeded): concurrent commits"
            f" would overwrite each other and lose rows. Use a store that honours"
            f" them, or an external manifest store in DynamoDB:"
            f" s3+ddb://{bucket}{urlparse(db.uri).path}?ddbTableName=<table>"
        )
        raise UnsafeObjectStore(msg)
    _SAFE_BUCKETS.add((client_args.get("endpoint_url"), bucket))


def _manifest_name(table: Table) -> str:
    """The name of the manifest of the table's current version."""
    version = table.version
    if table.uses_v2_manifest_paths():
        return f"{_MAX_VERSION - version:020d}.manifest"
    return f"{version}.manifest"
