"""`saepress serve` without servers: schedule validation, deployments built from saepress.toml, clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from flows import serve
from tasks.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _compress(**table):
    return {"flow": "compress", "parameters": {"source": "in", "out": "out"}, **table}


@pytest.mark.parametrize("table, message", [
    ({"flow": "compress"}, "exactly one of cron"),
    (_compress(cron="0 2 * * *", interval=60), "exactly one of cron"),
    (_compress(cron="0 25 * * *"), "Invalid cron string"),
    (_compress(cron=5), "cron must be a string"),
    (_compress(interval=0), "positive number of seconds"),
    (_compress(interval=True), "positive number of seconds"),
    (_compress(interval="daily"), "positive number of seconds"),
    (_compress(cron="0 2 * * *", timezone="Mars/Olympus"), "IANA name"),
    ({"flow": "transcode", "interval": 60}, "flow must be one of"),
    (_compress(interval=60, every="day"), "unknown key(s) ['every']"),
    ({"flow": "compress", "interval": 60, "parameters": "in out"}, "parameters must be a table"),
])
def test_bad_schedule_is_a_config_error_naming_the_table(table, message):
    with pytest.raises(ConfigError, match=r"\[saepress\.schedules\.nightly\]") as error:
        serve.parse_schedules({"nightly": table})
    assert message in str(error.value)


def test_schedule_name_and_table_shape():
    with pytest.raises(ConfigError, match="letters, digits"):
        serve.parse_schedules({"every night": _compress(interval=60)})
    with pytest.raises(ConfigError, match="must be a table"):
        serve.parse_schedules({"nightly": "0 2 * * *"})


def test_relative_paths_are_taken_from_the_config_folder(tmp_path):
    [schedule] = serve.parse_schedules(
        {"nightly": {"flow": "compress", "interval": 60,
                     "parameters": {"source": "photos/*.png", "out": "s3://bucket/shards", "quality": 40}}},
        base_dir=tmp_path)
    assert schedule.parameters == {"source": str(tmp_path / "photos/*.png"), "out": "s3://bucket/shards",
                                   "quality": 40}
    assert schedule.interval == 60.0 and schedule.cron is None


def test_parameters_are_checked_against_the_flow_signature():
    def flow_fn(source: str, out: str, quality: float | None = None):
        pass

    def schedule(**parameters):
        return serve.Schedule("nightly", "compress", None, 60.0, None, parameters)

    serve.check_parameters(schedule(source="a", out="b", quality=3), flow_fn)
    with pytest.raises(ConfigError, match=r"has no parameter\(s\) \['qualty'\]"):
        serve.check_parameters(schedule(source="a", out="b", qualty=3), flow_fn)
    with pytest.raises(ConfigError, match=r"must set \['out'\]"):
        serve.check_parameters(schedule(source="a"), flow_fn)


def test_example_config_builds_one_deployment_per_schedule():
    from flows.settings import Settings

    settings = Settings.resolve(config_path=REPO / "saepress.example.toml")
    schedules = serve.parse_schedules(settings.schedules, settings.config_path.parent)
    deployments = serve.build_deployments(schedules)
    assert [d.name for d in deployments] == [s.name for s in schedules]
    nightly = deployments[-1]
    assert nightly.entrypoint == "flows.compress.compress_flow"
    assert nightly.parameters["out"] == "s3://saepress/shards/archive"
    [cron] = nightly.schedules
    assert cron.schedule.cron == "0 4 * * *"
    assert nightly.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert nightly.paused is False


def test_serve_without_schedules_or_server_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    empty = tmp_path / "saepress.toml"
    empty.write_text('[saepress]\nmodel_name = "m"\n')
    with pytest.raises(ConfigError, match=r"no schedules in .*\[saepress\.schedules\.nightly\]"):
        serve.serve(str(empty))

    config = tmp_path / "scheduled.toml"
    config.write_text('[saepress.schedules.nightly]\nflow = "compress"\ninterval = 60\n'
                      'parameters = {source = "in", out = "out"}\n')
    with pytest.raises(ConfigError, match=r"prefect server start --host 127.0.0.1 --port 4321.*PREFECT_API_URL="):
        serve.serve(str(config), port=4321, start_server=False)


def test_server_command_is_a_loopback_prefect_server():
    assert serve.server_command("127.0.0.1", 4321) == [
        "prefect", "server", "start", "--host", "127.0.0.1", "--port", "4321"]
    assert not serve.server_healthy(serve.api_url("127.0.0.1", 9), timeout=0.5)


def test_a_schedules_fidelity_is_checked_before_anything_runs():
    from flows.compress import compress_flow

    def schedule(**parameters):
        return serve.Schedule("nightly", "compress", None, 60.0, None, parameters)

    serve.check_parameters(schedule(source="a", out="b", fidelity="lossless"), compress_flow.fn)
    with pytest.raises(ConfigError, match=r"nightly\].*unknown fidelity 'exact': use one of lossy, jpeg-exact"):
        serve.check_parameters(schedule(source="a", out="b", fidelity="exact"), compress_flow.fn)
