"""`webhook-service`: run the service, and the operator commands.

    webhook-service run                 migrate, then start web (gunicorn) and worker together
    webhook-service web | worker        one of them (Procfile)
    webhook-service migrate | check-config [--connect] | hash-password | new-api-key
    webhook-service prune [--days N] [--include-unresolved] [--dry-run] [--yes]
    webhook-service storage init        create the configured bucket or container
    webhook-service quarantine list | show ID | replay ID... | discard ID...
    webhook-service attachments list | retry ID... | retry --all-failed
    webhook-service deliveries list | endpoints | retry ID... | retry --all-failed | replay --endpoint ID ...

Each command's module is imported only when that command runs, so `worker` (which only supervises its
consumer processes) and `web` (which only reads the settings before it becomes gunicorn) do not load the
web app. `webhook-service --help` loads every command's module, for their one-line descriptions.
"""

from __future__ import annotations

import importlib
import os
import signal

import click

from webhook_service.cli.failures import operator_failure

# Command name -> "module:attribute" of its click command, loaded on first use.
COMMANDS = {
    "run": "webhook_service.cli.serve:run",
    "web": "webhook_service.cli.web:web",
    "worker": "webhook_service.cli.worker:worker",
    "consume": "webhook_service.cli.consume:consume",
    "migrate": "webhook_service.cli.serve:migrate_command",
    "check-config": "webhook_service.cli.check_config:check_config",
    "hash-password": "webhook_service.cli.keys:hash_password",
    "new-api-key": "webhook_service.cli.keys:new_api_key",
    "prune": "webhook_service.cli.maintenance:prune",
    "quarantine": "webhook_service.cli.quarantine:quarantine",
    "attachments": "webhook_service.cli.attachments:attachments",
    "deliveries": "webhook_service.cli.deliveries:deliveries",
    "storage": "webhook_service.cli.storage:storage_group",
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in their own modules (click's documented lazy-loading
    pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def invoke(self, ctx: click.Context) -> object:
        """Every command's failures for reasons outside it, each as its one line (failures.py)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Ended by the signal, as an interrupted program is (130 in a shell), not as click ends it
            # ("Aborted!", code 1): a parent cannot tell that from a failure. `run` stops its worker with
            # SIGINT, and one arriving before the worker has set its own handlers (while it loads and
            # builds its runtime) made `run` exit 1.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            raise  # not reached: the default action ends the process
        except Exception as error:
            failure = operator_failure(error)
            if failure is None:
                raise
            raise failure from None


@click.group(cls=LazyGroup)
@click.version_option(package_name="webhook-service")
@click.option(
    "--config",
    "config_path",
    # Checked here, so that a path that is not there is said to be --config's, not the variable's it is
    # passed on in.
    type=click.Path(exists=True, dir_okay=False),
    help="TOML configuration file (default: $WEBHOOK_SERVICE_CONFIG).",
)
def cli(config_path: str | None) -> None:
    """SMS/MMS webhook intake and media service."""
    if config_path:
        os.environ["WEBHOOK_SERVICE_CONFIG"] = os.path.abspath(config_path)


def main() -> None:
    cli(standalone_mode=True)
