"""`easel cluster serve` and `easel cluster config`: Easel on a Ray cluster through Ray Serve."""

from __future__ import annotations

import functools
import inspect
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from easel.catalog.catalog import Catalog, CatalogConfigError
from easel.catalog.defaults import default_models
from easel.catalog.machine import CPU_ONLY, Machine
from easel.cli.options import (
    ConfigOption,
    DataDirOption,
    LogLevelOption,
    ModelOption,
    PublicBaseUrlOption,
    StorageOption,
    UrlTtlOption,
)
from easel.cli.serve import configure_logging
from easel.cli.setting_options import setting_option, settings_from_flags
from easel.cluster.args import (
    DEFAULT_MATTING_GPU_SHARE,
    ClusterArgs,
    IngressOptions,
    MattingOptions,
    ServerOptions,
)
from easel.cluster.config_file import APP_NAME, render, serve_config
from easel.storage.images import open_image_store

err = Console(stderr=True)
cluster_app = typer.Typer(
    help="Run Easel on a Ray cluster with Ray Serve (needs the `cluster` extra).",
    no_args_is_help=True,
)

# Settings the replicas read from their environment; `cluster serve` passes the caller's along.
FORWARDED_ENV_PREFIXES = ("EASEL_", "AWS_")

HostOption = Annotated[str | None, setting_option("host")]
PortOption = Annotated[str | None, setting_option("port")]
GpusOption = Annotated[
    float | None,
    typer.Option(
        help="GPUs per model replica, for every model (default: the catalog's, else 1 "
        "when the cluster has GPUs)."
    ),
]
CpusOption = Annotated[float | None, typer.Option(help="CPUs per model replica, every model.")]
MinReplicasOption = Annotated[
    int | None, typer.Option(help="Fewest replicas per model deployment.")
]
MaxReplicasOption = Annotated[int | None, typer.Option(help="Most replicas per model deployment.")]
TargetOption = Annotated[
    float | None,
    typer.Option(help="Autoscaling target: ongoing requests per replica before Ray adds one."),
]
MaxOngoingOption = Annotated[
    int | None, typer.Option(help="Requests a model replica takes at once.")
]
MaxQueuedOption = Annotated[
    int | None,
    typer.Option(help="Requests waiting for a busy model per ingress replica; beyond: 429."),
]
IngressReplicasOption = Annotated[int, typer.Option(help="Replicas of the HTTP ingress.")]
IngressCpusOption = Annotated[float, typer.Option(help="CPUs per ingress replica.")]
MattingReplicasOption = Annotated[
    int, typer.Option(help="Replicas of the background-matting deployment (EASEL_MATTING_MODEL).")
]
MattingGpusOption = Annotated[
    float | None,
    typer.Option(
        help=f"GPUs per matting replica (default: {DEFAULT_MATTING_GPU_SHARE:g} when the "
        "cluster has GPUs to spare, else 0)."
    ),
]

# The application's args for the machine the model replicas run on.
ApplicationArgs = Callable[[Machine], ClusterArgs]


def _application_args(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    model: ModelOption = None,
    storage: StorageOption = None,
    public_base_url: PublicBaseUrlOption = None,
    url_ttl_seconds: UrlTtlOption = None,
    gpus_per_replica: GpusOption = None,
    cpus_per_replica: CpusOption = None,
    min_replicas: MinReplicasOption = None,
    max_replicas: MaxReplicasOption = None,
    target_ongoing_requests: TargetOption = None,
    max_ongoing_requests: MaxOngoingOption = None,
    max_queued_requests: MaxQueuedOption = None,
    ingress_replicas: IngressReplicasOption = 1,
    ingress_cpus: IngressCpusOption = 0.5,
    matting_replicas: MattingReplicasOption = 1,
    matting_gpus: MattingGpusOption = None,
) -> ApplicationArgs:
    """The application's args from the options `cluster serve` and `cluster config` share, for
    the machine the model replicas run on, which the built-in models follow."""
    given = {
        "data_dir": data_dir,
        "storage": storage,
        "public_base_url": public_base_url,
        "url_ttl_seconds": url_ttl_seconds,
    }
    # Parsed and checked here, so that a bad flag or EASEL_* value is named before any deployment.
    settings = settings_from_flags("cluster", **given)
    server = ServerOptions(
        **{name: getattr(settings, name) for name, value in given.items() if value is not None}
    )
    deployment = {
        "gpus_per_replica": gpus_per_replica,
        "cpus_per_replica": cpus_per_replica,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "target_ongoing_requests": target_ongoing_requests,
        "max_ongoing_requests": max_ongoing_requests,
        "max_queued_requests": max_queued_requests,
    }
    overrides = {name: value for name, value in deployment.items() if value is not None}
    ingress = IngressOptions(replicas=ingress_replicas, cpus_per_replica=ingress_cpus)
    matting = MattingOptions(replicas=matting_replicas, gpus_per_replica=matting_gpus)

    def for_machine(machine: Machine) -> ClusterArgs:
        catalog = Catalog.build(config, model or (), machine)
        return ClusterArgs.build(catalog, server, overrides, ingress, matting)

    for_machine(CPU_ONLY)  # checked now, so that a bad catalog fails before Ray starts
    return for_machine


def with_application_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` the options of `_application_args` too; it receives their result as
    `application`.

    Typer reads a command's options from its signature, so the wrapper shows both sets.
    """
    # eval_str: this module's annotations are strings, and Typer takes a __signature__ as it is.
    shared = inspect.signature(_application_args, eval_str=True).parameters
    own = [
        p
        for name, p in inspect.signature(command, eval_str=True).parameters.items()
        if name != "application"
    ]

    @functools.wraps(command)
    def wrapper(**options: Any) -> None:
        try:
            application = _application_args(**{name: options.pop(name) for name in shared})
        except (CatalogConfigError, ValueError) as exc:
            raise _fail(command.__name__, exc) from exc
        command(application=application, **options)

    # typeshed does not declare functions' `__signature__`, which inspect.signature reads first.
    wrapper.__signature__ = inspect.Signature([*own, *shared.values()])  # type: ignore[attr-defined]
    return wrapper


def _fail(command: str, exc: Exception) -> typer.Exit:
    err.print(f"[red]easel cluster {command}: {escape(str(exc))}[/red]")
    return typer.Exit(2)


@cluster_app.command("serve")
@with_application_options
def serve(
    application: ApplicationArgs,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to deploy to, e.g. ray://head:10001 or head:6379 (env "
            "RAY_ADDRESS; default: start a local Ray instance)."
        ),
    ] = None,
    host: HostOption = None,
    port: PortOption = None,
    detach: Annotated[
        bool,
        typer.Option(
            help="Return once deployed; the application keeps running on the cluster "
            "(only with --address)."
        ),
    ] = False,
    deploy_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            help="Seconds to wait for every deployment to run before giving up with the "
            "deployments that are not running and why.",
        ),
    ] = 120.0,
    check_resources: Annotated[
        bool,
        typer.Option(
            help="Refuse to deploy when the cluster has fewer CPUs or GPUs than the deployments "
            "ask for (turn off where an autoscaler adds nodes on demand).",
        ),
    ] = True,
    log_level: LogLevelOption = "info",
) -> None:
    """Deploy the API, and one model deployment per pipeline the catalog's models share, to Ray
    Serve."""
    settings = settings_from_flags("cluster serve", host=host, port=port)
    # The server options: the same on any machine.
    args = application(CPU_ONLY)
    if (args.server.storage or "").startswith("s3://"):
        try:  # fail here with the reason, not later inside every ingress replica
            open_image_store(args.server.settings()).close()
        except ValueError as exc:
            raise _fail("serve", exc) from exc
    address = address or os.environ.get("RAY_ADDRESS") or None
    if detach and address is None:
        raise _fail(
            "serve",
            ValueError("--detach needs --address: a local Ray instance ends with this command"),
        )
    if address is not None:
        _warn_about_local_state(args)
    configure_logging(log_level)
    try:
        args = _deploy(
            application,
            address,
            settings.host,
            settings.port,
            check_resources,
            deploy_timeout,
            log_level,
        )
    except ImportError as exc:
        message = f"needs Ray Serve: pip install 'easel[cluster]' ({exc})"
        raise _fail("serve", ValueError(message)) from exc
    except (ValueError, RuntimeError) as exc:  # no room, or Ray could not start the application
        raise _fail("serve", exc) from exc
    err.print(
        f"Easel is on Ray Serve at http://{settings.host}:{settings.port}/v1 "
        f"(models: {', '.join(m for m in args.models if m not in args.undeployed)})."
    )
    if not detach:
        _wait_for_interrupt()


def _warn_about_local_state(args: ClusterArgs) -> None:
    # Fine on a one-node cluster; on several nodes each ingress replica would see its own disk.
    if not (args.server.storage or "").startswith("s3://"):
        err.print(
            "[yellow]Images go to a local directory: on several nodes use --storage "
            "s3://BUCKET/PREFIX so that every ingress replica can serve them.[/yellow]"
        )
    if not args.server.settings().resolved_database_url.startswith("postgresql"):
        err.print(
            "[yellow]Keys live in SQLite on local disk: on several nodes set "
            "EASEL_DATABASE_URL to a PostgreSQL database.[/yellow]"
        )


def _deploy(
    application: ApplicationArgs,
    address: str | None,
    host: str,
    port: int,
    check_resources: bool,
    timeout_s: float,
    log_level: str,
) -> ClusterArgs:
    """Deploy and wait for the application to run, its built-in models chosen for the hardware
    of the cluster's model replicas, its replicas logging at `log_level`; the args deployed,
    undeployed models included.

    Raises ResourceShortage (nothing deployed) or RolloutFailed (the application removed again).
    """
    # Imported here so `easel serve` and `easel cluster config` work without Ray installed.
    import ray
    from ray import serve as ray_serve

    from easel.cluster.app import build_app, cluster_has_gpus
    from easel.cluster.capacity import fit_to_cluster, live_nodes
    from easel.cluster.replica_machine import cluster_replica_machine
    from easel.cluster.rollout import RolloutFailed, wait_until_running

    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
    ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    # Not this machine's hardware: the replicas may run on other nodes, of another kind.
    machine, why = cluster_replica_machine()
    args = application(machine)
    err.print(
        f"Built-in models follow the model replicas' hardware ({why}): "
        f"{default_models(machine).reason}.",
        markup=False,
    )
    if check_resources:
        args, left_out = fit_to_cluster(args, live_nodes(), cluster_has_gpus())
        for models, shortage in left_out.items():
            err.print(
                f"[yellow]Not deployed: {escape(', '.join(models))}. They keep their built-in "
                f"weights and the cluster has no room for their deployment ({escape(shortage)}). "
                "Their requests get 503 model_unavailable; to serve them, configure their "
                "weights and a deployment that fits.[/yellow]"
            )
    ray_serve.start(http_options={"host": host, "port": port})
    target = ray_serve.RunTarget(
        build_app(args.model_dump(mode="json")),
        name=APP_NAME,
        route_prefix="/",
        logging_config={"log_level": log_level.upper()},
    )
    ray_serve.run_many(
        [target], wait_for_ingress_deployment_creation=False, wait_for_applications_running=False
    )
    err.print(f"Deploying to Ray Serve; waiting up to {timeout_s:g} s for it to run.")
    try:
        wait_until_running(
            APP_NAME, timeout_s, on_message=lambda line: err.print(line, markup=False)
        )
    except RolloutFailed:
        # On a cluster that outlives this command, replicas would otherwise wait on for ever.
        ray_serve.delete(APP_NAME)
        raise
    return args


def _wait_for_interrupt() -> None:
    from ray import serve as ray_serve

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    err.print("Shutting Easel's Ray Serve application down.")
    ray_serve.delete(APP_NAME)


@cluster_app.command("config")
@with_application_options
def config(
    application: ApplicationArgs,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    host: HostOption = None,
    port: PortOption = None,
) -> None:
    """Write the Ray Serve config file (`serve deploy`, KubeRay) equivalent to `cluster serve`."""
    settings = settings_from_flags("cluster config", host=host, port=port)
    # No cluster to look at: the built-in models are those for CPU-only replicas.
    args = application(CPU_ONLY)
    text = render(serve_config(args, settings.host, settings.port))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"Wrote {output}; deploy it with: serve deploy {output}")
