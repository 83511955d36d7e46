"""Prefect tasks of the training flow, wrapping the plain functions of the training modules.

NO_CACHE everywhere: each call has side effects (a new run, a new version) that a cached result would skip.
"""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.patch_stream import describe_patches
from tasks.registry import decide_champion, register
from tasks.tracking import start_run
from tasks.training import train
from tasks.validation import fetch_validation_images

describe_patches_task = task(describe_patches, name="describe-patches", retries=2, retry_delay_seconds=5,
                             cache_policy=NO_CACHE)
fetch_validation_task = task(fetch_validation_images, name="fetch-validation-images", retries=2,
                             retry_delay_seconds=5, cache_policy=NO_CACHE)
# Not retried: a retry after a lost reply would create a second run (or a second model version, below).
start_run_task = task(start_run, name="start-mlflow-run", cache_policy=NO_CACHE)
# Not retried either: an interrupted training is continued from its checkpoint with --resume, not started over.
train_task = task(train, name="train-codec", cache_policy=NO_CACHE)
register_task = task(register, name="register-model-version", cache_policy=NO_CACHE)
decide_champion_task = task(decide_champion, name="decide-champion", retries=2, retry_delay_seconds=5,
                            cache_policy=NO_CACHE)
