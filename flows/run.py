"""`saepress run`: the whole pipeline on one archive, end to end.

ingest -> extract -> train (tracked and registered in MLflow) -> compress into WORKDIR/shards -> verify.
The archive's own model is trained and raced against the champion and the shipped default on the archive's
validation images; the shards are coded with the best of them (the candidate only if it was promoted).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.access import verify
from flows.compress import compress_flow
from flows.extract import extract_flow
from flows.ingest import ingest_flow
from flows.settings import Settings
from flows.train import comparison_table, train_flow
from tasks import defaults, registry

SAMPLE_IMAGES = Path(__file__).parent / "sample_data"


@flow(name="saepress-run", log_prints=True)
def run_flow(source: str | None, out: str, model: str | None = None, steps: int | None = None,
             quality: float = defaults.QUALITY, dask_address: str | None = None,
             start: str = defaults.TRAIN_START) -> dict[str, Any]:
    settings = Settings.resolve(dask_address=dask_address).prepare()
    workdir = Path(out).resolve()
    shards = workdir / "shards"
    source = source or str(SAMPLE_IMAGES / "*.png")

    steps_done = [ingest_flow(source=source, out=str(workdir), dask_address=dask_address)]
    trained = None
    if model is None:
        steps_done.append(extract_flow(workdir=str(workdir), dask_address=dask_address))
        trained = train_flow(workdir=str(workdir), steps=steps, start=start)
        steps_done.append(trained)
        model = trained["decision"]["compress_with"] or registry.DEFAULT_URI
    compressed = compress_flow(source=str(workdir), out=str(shards), model=model, quality=quality,
                               dask_address=dask_address)
    steps_done += [compressed, verify(sharddir=str(shards), decode=True)]

    report: list[str] = []
    problems: list[str] = []
    for result in steps_done:
        report.extend(result.get("report", []))
        problems.extend(result.get("problems", []))
    report += [
        "",
        f"catalog:   {workdir / 'catalog.parquet'}",
        f"shards:    {shards}",
        f"MLflow:    {settings.mlflow_tracking_uri}",
        f"MLflow UI: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}"
        "   (needs the server extra: pip install 'saepress[server]')",
        f"get files back: saepress decompress {shards} --out {workdir / 'restored'}",
    ]
    if trained is not None:
        decision = trained["decision"]
        report += ["", *comparison_table(decision), f"decision: {decision['decision']} ({decision['reason']})"]
    used = compressed["model"]
    report.append(f"shards coded with: {used['uri']} (fingerprint {used['fingerprint'][:12]})")
    return {"report": report, "problems": problems, "model": used,
            "decision": None if trained is None else trained["decision"]}
