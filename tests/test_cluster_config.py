"""`easel cluster config` and the application it describes, without starting Ray; Easel errors
surviving the trip across process boundaries."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from typer.testing import CliRunner, Result

from easel.catalog.defaults import DEFAULT_MODELS
from easel.cli import app
from easel.cluster.app import build_app
from easel.cluster.config_file import IMPORT_PATH
from easel.errors import EaselError, RateLimitError, ServiceUnavailableError


def cluster_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    # In process: the same typer app as the `easel` command, without re-importing torch each time.
    return CliRunner().invoke(app, ["cluster", *args], env=env)


def test_config_file_deploys_the_catalog_with_per_model_scaling(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "dall-e-3": {
                        "source": "/models/sd3",
                        "deployment": {"gpus_per_replica": 1, "min_replicas": 2, "max_replicas": 6},
                    },
                    "flux": {"source": "/models/flux", "deployment": {"gpus_per_replica": 2}},
                }
            }
        )
    )
    output = tmp_path / "serve.yaml"
    result = cluster_cli(
        "config",
        "-o",
        str(output),
        "--config",
        str(catalog),
        "--model",
        "dall-e-2=/models/turbo",
        "--storage",
        "s3://images/easel",
        "--url-ttl",
        "900",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--max-queued-requests",
        "64",
        "--ingress-replicas",
        "2",
        "--data-dir",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(output.read_text())
    assert config["http_options"] == {"host": "0.0.0.0", "port": 8000}
    (application,) = config["applications"]
    assert application["import_path"] == IMPORT_PATH == "easel.cluster.app:build_app"
    assert application["route_prefix"] == "/"
    args = application["args"]
    assert args["server"]["storage"] == "s3://images/easel"
    assert args["server"]["url_ttl_seconds"] == 900
    assert args["ingress"]["replicas"] == 2
    assert args["models"]["dall-e-2"]["source"] == "/models/turbo"
    assert args["models"]["dall-e-2"]["max_n"] == 10  # the whole catalog entry travels

    # What Ray builds from the file: an ingress and one deployment per pipeline, sized as
    # configured, serving the names that share it.
    app = build_app(args)
    ingress = app._bound_deployment
    assert ingress.name == "ingress"
    assert ingress._deployment_config.num_replicas == 2
    # Ray annotates init_args as a 1-tuple; the ingress is bound with (args, models, matting).
    models = cast(tuple[Any, ...], ingress.init_args)[1]
    assert set(models) == {*DEFAULT_MODELS, "flux"}
    dalle3 = models["dall-e-3"]._bound_deployment
    assert dalle3.name.startswith("model:sd3-")
    assert dalle3.init_args[0].names == ("dall-e-3",)
    assert models["gpt-image-1"] is models["gpt-image-2"]  # both still on the built-in weights
    assert dalle3.ray_actor_options["num_gpus"] == 1
    scaling = dalle3._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas) == (2, 6)
    assert dalle3._deployment_config.max_queued_requests == 64
    assert models["flux"]._bound_deployment.ray_actor_options["num_gpus"] == 2
    # Not connected to Ray: no GPUs known, so models without a GPU count get none.
    assert models["dall-e-2"]._bound_deployment.ray_actor_options["num_gpus"] == 0


def test_config_file_keeps_secrets_out(tmp_path: Path) -> None:
    result = cluster_cli(
        "config",
        "--data-dir",
        str(tmp_path),
        env={"EASEL_URL_SECRET": "s" * 40, "EASEL_DATABASE_URL": "postgresql://u:hunter2@db/easel"},
    )
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.stdout and "s" * 40 not in result.stdout
    assert "EASEL_DATABASE_URL" in result.stdout  # the header says where secrets go


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--min-replicas", "3", "--max-replicas", "2"],
            "min_replicas must not exceed max_replicas",
        ),
        (["--gpus-per-replica", "-1"], "gpus_per_replica"),
        (["--model", "oops"], "NAME=HUB_ID_OR_DIR"),
    ],
)
def test_bad_cluster_options_are_refused(tmp_path: Path, flags: list[str], message: str) -> None:
    result = cluster_cli("config", "--data-dir", str(tmp_path), *flags)
    assert result.exit_code == 2
    assert message in result.stderr


def test_names_of_one_pipeline_must_ask_for_the_same_deployment(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    only_one = {"gpt-image-1": {"deployment": {"max_replicas": 4}}}
    catalog.write_text(yaml.safe_dump({"models": only_one}))
    result = cluster_cli("config", "--data-dir", str(tmp_path), "--config", str(catalog))
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "share the pipeline stabilityai/sd-turbo, so one Ray deployment" in message
    assert "max_replicas (dall-e-2: 1, dall-e-3: 1, gpt-image-1: 4," in message


def test_detach_needs_a_cluster_address(tmp_path: Path) -> None:
    result = cluster_cli("serve", "--detach", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "--detach needs --address" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    "error",
    [
        ServiceUnavailableError("gone", code="model_unavailable", headers={"Retry-After": "30"}),
        RateLimitError("busy", code="server_busy", headers={"Retry-After": "2"}),
        EaselError("teapot", status_code=418, param="p"),
    ],
)
def test_easel_errors_survive_pickling(error: EaselError) -> None:
    # Ray pickles an exception raised in a replica to hand it to the ingress.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.status_code == error.status_code
    assert copy.envelope() == error.envelope()
    assert copy.headers == error.headers
