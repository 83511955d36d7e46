"""The job report: one self-contained HTML page (inline PNG plots, no scripts, no external files) about a shard set.

It shows where every catalogued file went (coded, passthrough with its reasons, duplicate, skipped), the bytes
saved, the rate as total coded bits over total coded pixels (and the median item), bpp and PSNR histograms, and the
items with the lowest PSNR as original/decoded thumbnails side by side. Every compress job writes it to
``SHARDDIR/report.html`` for the set as that job left it; ``saepress report SHARDDIR`` rebuilds it.
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import compress as units
from tasks import shards, warned
from tasks.access import open_shard_set
from tasks.stats import finite, rate_summary

REPORT_NAME = "report.html"
WORST_ITEMS = 6          # lowest-PSNR items shown as thumbnails
THUMBNAIL = 192          # longest side of a thumbnail, pixels
COLUMNS = ["id", "paths", "kind", "original_bytes", "compressed_bytes", "width", "height", "bpp", "psnr", "reason"]


def collect(sharddir: str) -> dict[str, Any]:
    """The manifest and one record per stored item (every column but the payload)."""
    fs, root, manifest = open_shard_set(sharddir)
    items = []
    for entry in manifest["shards"]:
        table = shards.read_shard(fs, f"{root}/{entry['name']}", columns=COLUMNS)
        items += [dict(row, shard=entry["name"]) for row in table.to_pylist()]
    return {"manifest": manifest, "items": items}


def build(sharddir: str, source_url: str | None = None) -> bytes:
    """The report page of ``sharddir`` as it is now; originals for the thumbnails come from ``source_url``."""
    found = collect(sharddir)
    manifest, items = found["manifest"], found["items"]
    totals = manifest["totals"]
    rates = rate_summary(items)
    saved = totals.get("original_bytes", 0) - totals.get("stored_bytes", 0)
    reasons = Counter(item["reason"] or "" for item in items if item["kind"] == "passthrough")
    skipped = Counter(entry["reason"] or "" for entry in manifest["skipped"])
    job = manifest["jobs"][-1] if manifest["jobs"] else {}
    counts = [("files", totals.get("files", 0)),
              *((kind, totals.get(kind, 0)) for kind in shards.shown_kinds(totals)),
              ("duplicate", totals.get("duplicate", 0)), ("skipped", totals.get("skipped", 0))]
    per_kind = [(kind, f"{entry['items']:,} item(s), {entry['original_bytes']:,} -> {entry['stored_bytes']:,} bytes",
                 f"bytes_{kind}") for kind, entry in sorted(totals.get("kinds", {}).items())]
    numbers = [("original bytes", f"{totals.get('original_bytes', 0):,}", "original_bytes"),
               ("stored bytes", f"{totals.get('stored_bytes', 0):,}", "stored_bytes"),
               ("bytes saved", f"{saved:,}", "bytes_saved"),
               ("ratio", f"{_ratio(totals):.2f}", "ratio"),
               ("bpp (coded bits / coded pixels)", f"{rates['bpp']:.3f}", "bpp"),
               ("median item bpp", f"{rates['median_bpp']:.3f}", "median_bpp"),
               ("median item PSNR, dB", f"{rates['median_psnr']:.2f}", "median_psnr"),
               ("lowest item PSNR, dB", f"{rates['min_psnr']:.2f}", "min_psnr")]
    coded = [item for item in items if item["kind"] == "coded"]
    worst = sorted((item for item in coded if finite([item["psnr"]])), key=lambda item: item["psnr"])[:WORST_ITEMS]
    parts = [f"<h1>saepress shard set report</h1><p>{_e(sharddir)}: manifest generation "
             f"<span id='generation'>{manifest['generation']}</span>, {len(manifest['shards'])} shard(s)"
             + (f", last job {_e(job['job'])}" if job else "") + "</p>",
             "<h2>Where every file went</h2>", _table([(name, f"{value:,}", name) for name, value in counts]),
             "<h2>Bytes and rate</h2>", _table(numbers)]
    if per_kind:
        parts += ["<h2>Stored items and bytes per kind (every job)</h2>", _table(per_kind)]
    if reasons:
        parts += ["<h2>Stored verbatim (passthrough), by reason</h2>",
                  _table([(reason or "(none)", f"{n:,}", None) for reason, n in reasons.most_common()])]
    if skipped:
        parts += ["<h2>Skipped, by reason</h2>",
                  _table([(reason or "(none)", f"{n:,}", None) for reason, n in skipped.most_common()])]
    parts += ["<h2>Plots</h2>", _plots(counts, totals, saved, coded)]
    if worst:
        parts += ["<h2>Lowest PSNR: original and decoded</h2>", _thumbnails(sharddir, worst, source_url)]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>saepress report</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}td.n{text-align:right}"
            "figure{display:inline-block;margin:.3em}img{border:1px solid #ccc}"
            ".item{display:inline-block;vertical-align:top;margin:.5em 1.5em .5em 0}</style></head><body>"
            + "".join(parts) + "</body></html>")
    return page.encode()


def recorded_source(sharddir: str) -> str | None:
    """The source the set was compressed from, read from its catalog (in SHARDDIR, or the last job's WORKDIR)."""
    import fsspec

    from tasks.plan import CATALOG, find_catalog

    _, _, manifest = open_shard_set(sharddir)
    source = manifest["jobs"][-1]["parameters"].get("source") if manifest["jobs"] else None
    candidates = [f"{sharddir.rstrip('/')}/{CATALOG}"]
    workdir_catalog = find_catalog(source) if source else None
    if workdir_catalog:
        candidates.append(workdir_catalog)
    for url in candidates:
        try:
            fs, path = fsspec.core.url_to_fs(url)
            metadata = shards.read_shard(fs, path, columns=["id"]).schema.metadata or {}
        except (OSError, ValueError, TypeError):
            continue
        if b"saepress.source" in metadata:
            return metadata[b"saepress.source"].decode()
    return None


def write(sharddir: str, source_url: str | None = None) -> str:
    """Build the report and store it atomically as SHARDDIR/report.html; returns its URL."""
    page = build(sharddir, source_url)
    fs, root = shards.open_dir(sharddir)
    shards.put_atomic(fs, f"{root}/{REPORT_NAME}", page)
    return f"{sharddir.rstrip('/')}/{REPORT_NAME}"


def _ratio(totals: dict) -> float:
    stored = totals.get("stored_bytes", 0)
    return totals.get("original_bytes", 0) / stored if stored else 0.0


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(rows: list[tuple[str, str, str | None]]) -> str:
    cells = "".join(f"<tr><th>{_e(name)}</th><td class='n'" + (f" id='{key}'" if key else "") + f">{_e(value)}</td></tr>"
                    for name, value, key in rows)
    return f"<table>{cells}</table>"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plots(counts: list[tuple[str, int]], totals: dict, saved: int, coded: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    kinds = counts[1:]
    axes[0].bar([name for name, _ in kinds], [value for _, value in kinds], color="#4c72b0")
    axes[0].set_title("files per kind")
    axes[0].tick_params(axis="x", labelrotation=30)
    axes[1].bar(["original", "stored"], [totals.get("original_bytes", 0) / 2**20, totals.get("stored_bytes", 0) / 2**20],
                color=["#999999", "#55a868"])
    axes[1].set_title(f"MB ({saved / 2**20:.2f} MB saved)")
    bpp = [item["bpp"] for item in coded]
    psnr = finite(item["psnr"] for item in coded)
    axes[2].hist(bpp or [0], bins=20, color="#c44e52")
    axes[2].set_title("bpp per coded item")
    axes[3].hist(psnr or [0], bins=20, color="#8172b2")
    axes[3].set_title("PSNR per coded item, dB")
    images.append(_png(figure))
    plt.close(figure)
    return "".join(f"<img alt='plots' src='{src}'>" for src in images)


def _thumbnails(sharddir: str, worst: list[dict], source_url: str | None) -> str:
    """Original and decoded thumbnails of each item; the original only when the source can still be read."""
    from PIL import Image

    from sae_model import metadata

    fs, root, _ = open_shard_set(sharddir)
    originals: dict[str, bytes] = {}
    if source_url:
        from tasks.sources import SourceError, open_source

        wanted = {item["paths"][0]: item["id"] for item in worst}
        try:
            for path, data in open_source(source_url).read_many(list(wanted), errors="return"):
                if not isinstance(data, SourceError):
                    originals[wanted[path]] = data
        except (OSError, SourceError):  # the source moved or is gone: the decoded thumbnails still show
            pass
    figures = []
    for item in worst:
        row = shards.read_shard(fs, f"{root}/{item['shard']}", ids=[item["id"]]).to_pylist()[0]
        cells = []
        for label, data in (("original", originals.get(item["id"])), ("decoded", units.restore(sharddir, row))):
            if data is None:
                cells.append("<figure><figcaption>original: source not reachable</figcaption></figure>")
                continue
            # Warnings reading it again are not news: compress noted them in the item's row. metadata.upright, not
            # ImageOps.exif_transpose: EXIF that Pillow cannot write back must not stop the page.
            with warned.collected(), Image.open(io.BytesIO(data)) as opened:
                image = metadata.upright(opened).image.convert("RGB")
            # Small images are enlarged (pixel-exact) so that their artefacts can be seen; large ones shrunk.
            scale = max(1, THUMBNAIL // max(image.size))
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            src = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
            cells.append(f"<figure><img alt='{label}' src='{src}'><figcaption>{label}</figcaption></figure>")
        figures.append(f"<div class='item'><p>{_e(item['paths'][0])}: {item['psnr']:.2f} dB, {item['bpp']:.3f} bpp, "
                       f"{item['width']}x{item['height']}</p>{''.join(cells)}</div>")
    return "".join(figures)


# Retried once: a report is rebuilt from the committed set, so a second attempt writes the same page.
write_task = task(write, name="write-report", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
