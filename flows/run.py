"""`saepress run`: the whole pipeline on one archive, end to end.

ingest -> extract -> train (tracked and registered in MLflow) -> compress into WORKDIR/shards -> verify.
The archive's own model is the default path: a codec trained on the content it will compress.
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
from tasks import defaults
from flows.train import train_flow

SAMPLE_IMAGES = Path(__file__).parent / "sample_data"


@flow(name="saepress-run", log_prints=True)
def run_flow(source: str | None, out: str, model: str | None = None, steps: int | None = None,
             quality: float = defaults.QUALITY, dask_address: str | None = None) -> dict[str, Any]:
    settings = Settings.resolve(dask_address=dask_address).prepare()
    workdir = Path(out).resolve()
    shards = workdir / "shards"
    source = source or str(SAMPLE_IMAGES / "*.png")

    steps_done = [ingest_flow(source=source, out=str(workdir), dask_address=dask_address)]
    if model is None:
        steps_done.append(extract_flow(workdir=str(workdir), dask_address=dask_address))
        trained = train_flow(workdir=str(workdir), steps=steps)
        steps_done.append(trained)
        model = trained["model_uri"]
    steps_done.append(compress_flow(source=str(workdir), out=str(shards), model=model, quality=quality,
                                    dask_address=dask_address))
    steps_done.append(verify(sharddir=str(shards), decode=True))

    report: list[str] = []
    problems: list[str] = []
    for result in steps_done:
        report.extend(result.get("report", []))
        problems.extend(result.get("problems", []))
    report += [
        "",
        f"catalog:   {workdir / 'catalog.parquet'}",
        f"shards:    {shards}",
        f"model:     {model}",
        f"MLflow:    {settings.mlflow_tracking_uri}",
        f"MLflow UI: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}"
        "   (needs the server extra: pip install 'saepress[server]')",
        f"get files back: saepress decompress {shards} --out {workdir / 'restored'}",
    ]
    return {"report": report, "problems": problems}
