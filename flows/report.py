"""`saepress report SHARDDIR`: rebuild the shard set's HTML report (in this process: no Prefect server, no Dask)."""
from __future__ import annotations

from typing import Any

from tasks import report as pages


def report(sharddir: str) -> dict[str, Any]:
    """Write SHARDDIR/report.html for the whole set; originals for the thumbnails come from its recorded source."""
    source = pages.recorded_source(sharddir)
    path = pages.write(sharddir, source)
    lines = [f"report: {path}"]
    if source is None:
        lines.append("the source the set was compressed from is not recorded or not reachable: thumbnails show "
                     "the decoded images only")
    return {"report": lines, "problems": []}
