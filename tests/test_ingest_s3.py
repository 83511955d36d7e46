"""Ingest from s3:// against a real S3-compatible server (moto's standalone server) on loopback, via s3fs.

The endpoint reaches s3fs on every Dask worker through the standard ``AWS_ENDPOINT_URL`` variable: workers
started after it is set inherit it, and the source stays a plain URL.
"""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from fixtures_archives import TEST_MAX_BYTES, common_cases, expected_rows, local_cluster, write_fs, write_tar

from flows.ingest import ingest_flow
from tasks.sources import open_source

pytestmark = pytest.mark.usefixtures("prefect_harness")
CASES = common_cases()


@pytest.fixture(scope="module")
def s3_bucket(s3_server):
    """A bucket on the session's S3 server, and a Dask worker that can reach it."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in s3_server.items():
            env.setenv(name, value)
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("saepress-ingest-test")
        with local_cluster(workers=1) as address:
            yield fs, "saepress-ingest-test", address


def test_s3_folder_and_archive_behind_a_url(s3_bucket, tmp_path):
    fs, bucket, address = s3_bucket
    write_fs(fs, f"{bucket}/photos", CASES)
    fs.put_file(str(write_tar(tmp_path / "src.tar.gz", CASES)), f"{bucket}/archives/src.tar.gz")

    for url in (f"s3://{bucket}/photos", f"s3://{bucket}/archives/src.tar.gz"):
        out = tmp_path / ("work-" + url.rsplit("/", 1)[-1])
        result = ingest_flow(url, str(out), max_bytes=TEST_MAX_BYTES, dask_address=address)
        rows = pq.read_table(out / "catalog.parquet").to_pylist()
        assert [{k: v for k, v in row.items() if k not in ("reason", "modified")} for row in rows] == expected_rows(CASES), url
        assert (result["seen"], result["ok"], result["duplicate"], result["rejected"]) == (16, 7, 1, 8)

    # Reading back by path, as the compressor does.
    src = open_source(f"s3://{bucket}/photos")
    assert dict(src.read_many(["a/red.png", "b/cmyk.jpg"])) == {c.path: c.data for c in CASES
                                                                  if c.path in ("a/red.png", "b/cmyk.jpg")}
