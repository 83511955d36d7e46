"""``saepress extract WORKDIR``: sample training patches from the catalogued images."""
from __future__ import annotations

from prefect import flow

from flows.cluster import dask_client
from flows.settings import Settings
from tasks import defaults, ingest, patches, store
from tasks.errors import ConfigError


@flow(name="saepress-extract")
def extract_flow(workdir: str, patches_per_image: int = defaults.EXTRACT.patches_per_image,
                 val_fraction: float = defaults.EXTRACT.val_fraction, seed: int = defaults.EXTRACT.seed,
                 dask_address: str | None = None) -> dict:
    """Write ``WORKDIR/patches/part-*.parquet`` from the ``ok`` rows of ``WORKDIR/catalog.parquet``.

    The workers write the parts: with a remote Dask cluster, WORKDIR is an fsspec URL (``s3://...``) they can
    reach, or a folder they all mount.
    """
    if patches_per_image < 1:
        raise ConfigError(f"--patches-per-image must be at least 1, got {patches_per_image}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    from sae_model import PATCH_SPEC

    settings = Settings.resolve(dask_address=dask_address).prepare()
    root = store.location(workdir)
    catalog = ingest.catalog_url(root)
    existing = ingest.read_catalog(root)
    if existing is None:
        raise ConfigError(f"no catalog at {catalog}; run `saepress ingest SOURCE --out {root}` first")
    rows, meta = existing
    if meta.get("saepress.catalog_version") != ingest.CATALOG_VERSION:
        raise ConfigError(f"{catalog} has catalog version {meta.get('saepress.catalog_version')!r}; "
                          f"this saepress reads {ingest.CATALOG_VERSION!r}: run saepress ingest into a new folder")
    url = meta["saepress.source"]
    max_pixels = int(meta.get("saepress.max_pixels", defaults.INGEST.max_pixels))
    ok = [(row["id"], row["path"]) for row in rows if row["status"] == "ok"]
    if not ok:
        raise ConfigError(f"the catalog at {catalog} has no usable images (status ok)")

    split = patches.assign_splits([image_id for image_id, _ in ok], val_fraction, seed)
    items = [(image_id, path, split[image_id]) for image_id, path in ok]
    # Catalog order is source order, so each batch is one partial pass over a tar archive.
    batches = [items[i:i + patches.BATCH_IMAGES] for i in range(0, len(items), patches.BATCH_IMAGES)]
    patch_dir = store.join(root, patches.PATCH_DIR)
    metadata = patches.patch_metadata(PATCH_SPEC, seed, store.sha256(catalog), patches_per_image)

    with dask_client(settings):
        results = patches.extract_patches(url, batches, patch_dir, patches_per_image, seed, metadata, max_pixels)
    stale = patches.remove_stale_parts(patch_dir, {result["part"] for result in results})

    totals = {key: sum(result[key] for result in results)
              for key in ("images", "patches", "train", "val", "empty_images")}
    problems = [line for result in results for line in result["problems"]]
    images_per_split = {s: sum(1 for v in split.values() if v == s) for s in ("train", "val")}
    report = [
        f"images: {totals['images']} of {len(ok)} ok rows "
        f"(train {images_per_split['train']}, val {images_per_split['val']} by image)",
        f"patches: {totals['patches']} (train {totals['train']}, val {totals['val']}), "
        f"up to {patches_per_image} per image, seed {seed}",
        f"parts: {len(results)} in {patch_dir}" + (f" ({stale} stale files removed)" if stale else ""),
    ]
    if totals["empty_images"]:
        report.append(f"images smaller than one patch (no patches): {totals['empty_images']}")
    report += [f"problem: {line}" for line in problems]
    return {"report": report, "problems": problems, "patch_dir": patch_dir, "parts": len(results),
            "split_images": images_per_split, **totals}
