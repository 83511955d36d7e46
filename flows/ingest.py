"""``saepress ingest SOURCE --out WORKDIR``: catalogue every file of an archive, idempotently."""
from __future__ import annotations

from prefect import flow

from flows.cluster import dask_client
from flows.settings import Settings
from tasks import defaults, ingest, store, warned
from tasks.errors import ConfigError
from tasks.sources import Member, normalise_url

MAX_LISTED = 50


@flow(name="saepress-ingest")
def ingest_flow(source: str, out: str, max_pixels: int | None = None, dask_address: str | None = None,
                max_bytes: int | None = None) -> dict:
    """Probe the files of ``source`` not yet in ``out/catalog.parquet`` and rewrite the catalog.

    ``out`` is a local folder or an fsspec URL (``s3://bucket/work/archive``): the catalog is one file written
    whole by this process.

    ``max_pixels`` rejects images whose header declares more pixels; ``max_bytes`` rejects files larger than that
    many bytes before reading them (None: the defaults in tasks.defaults.INGEST).
    """
    max_pixels = max_pixels or defaults.INGEST.max_pixels
    max_bytes = max_bytes or defaults.INGEST.max_bytes
    if max_pixels < 1 or max_bytes < 1:
        raise ConfigError("--max-pixels and max_bytes must be positive")
    settings = Settings.resolve(dask_address=dask_address).prepare()
    url = normalise_url(source)
    workdir = store.location(out)
    previous = _previous_rows(workdir, url)

    with dask_client(settings):
        listing = ingest.list_source(url)
        if listing["missing"]:
            raise ConfigError(f"{listing['missing']}; give a folder, a glob, a .tar/.tar.gz/.zip or an fsspec URL")
        members, damage = [Member(*member) for member in listing["members"]], listing["damage"]
        kept, new = ingest.plan_probe(previous, members)
        probed = ingest.probe_files(url, new, max_pixels, max_bytes) if new else []

    merged, seen = ingest.merge_rows(previous, kept, probed, members)
    rows = ingest.resolve_duplicates(merged)
    catalog = ingest.write_catalog(workdir, rows, url, max_pixels)
    counts = ingest.summarise(rows)
    # Problems of the source as a whole (a job that ingests on its way, like compress, reports these too).
    source_problems = [damage] if damage else []
    if not members:
        source_problems.append(f"{url} holds no files")
    if counts["ok"] + counts["duplicate"] + counts["rejected"] != len(members) or len(rows) != len(members):
        source_problems.append(f"catalog has {len(rows)} rows for {len(members)} files seen")
    problems = list(source_problems)
    # Rejected files are the job's findings (exit code 1), each named, up to a screenful; the catalog has all.
    rejected = [row for row in rows if row["status"] == "rejected"]
    problems += [f"rejected {row['path']}: {row['error']}: {row['reason']}" for row in rejected[:MAX_LISTED]]
    if len(rejected) > MAX_LISTED:
        problems.append(f"... and {len(rejected) - MAX_LISTED} more rejected files (status 'rejected' in {catalog})")
    report = [
        f"source: {url}",
        f"files seen: {len(members)} (new {seen['new']}, changed {seen['changed']}, already catalogued "
        f"{seen['same']}, gone since last run {len(set(previous) - {m.path for m in members})})",
        f"ok {counts['ok']} + duplicate {counts['duplicate']} + rejected {counts['rejected']} = {len(rows)}",
    ]
    if counts["errors"]:
        report.append("rejected: " + ", ".join(f"{error} {n}" for error, n in counts["errors"].items()))
    noisy = [row for row in probed if row["warnings"]]
    for row in noisy:
        warned.log(row["path"], row["warnings"])
    report += warned.summary(len(noisy), "listed in the catalog's warnings column and in the log")
    if counts["animated"]:
        report.append(f"animated (first frame used): {counts['animated']}")
    report.append(f"catalog: {catalog}")
    return {"report": report, "problems": problems, "source_problems": source_problems, "catalog": catalog,
            "new": len(new), **counts}


def _previous_rows(workdir: str, url: str) -> dict[str, dict]:
    existing = ingest.read_catalog(workdir)
    if existing is None:
        return {}
    rows, meta = existing
    if meta.get("saepress.catalog_version") != ingest.CATALOG_VERSION:
        raise ConfigError(f"{ingest.catalog_url(workdir)} has catalog version "
                          f"{meta.get('saepress.catalog_version')!r}, this saepress writes "
                          f"{ingest.CATALOG_VERSION!r}; ingest into a new --out folder")
    if meta.get("saepress.source") != url:
        raise ConfigError(f"{workdir} already catalogues {meta.get('saepress.source')}, not {url}; "
                          "use another --out folder for another source")
    return {row["path"]: row for row in rows}
