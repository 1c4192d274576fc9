"""The ``processor`` command: ``run`` the stage (and tools around it).

Every option of ``run`` is a field of ``processor.entrypoints.settings.Settings``: a flag
overrides its environment variable, and ``--help`` shows both and the default.
Exit codes: 0 stopped cleanly (SIGTERM or SIGINT, at any moment), 2 configuration
error, 3 fatal runtime error (the provider refused the key, Kafka could not confirm a
delivery, or anything unexpected). Each failure is told in one line, never a traceback
(it is logged at DEBUG level).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr

from processor import __version__
from processor.core.errors import ConfigError, FatalError, UnexpectedError
from processor.entrypoints.settings import Settings, StageSettings, env_name, load, load_as
from processor.runtime.signals import StopRequest

log = logging.getLogger("processor")

EXIT_CONFIG = 2


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _default_text(value: Any, description: str = "") -> str:
    if isinstance(value, SecretStr):
        if value.get_secret_value():
            return "set"
        return "required" if "required" in description else "''"
    if hasattr(value, "value"):
        value = value.value
    return "''" if value == "" else str(value)


def flag_fields(kind: type[StageSettings] = Settings) -> list[str]:
    """Settings that can be given as flags: all but secrets, which a command line would
    show to everyone who can list processes."""
    return [f for f, info in kind.model_fields.items() if info.annotation is not SecretStr]


def secret_variables(kind: type[StageSettings] = Settings) -> list[str]:
    return [env_name(f, kind) for f, info in kind.model_fields.items()
            if info.annotation is SecretStr]


def _add_settings_options(parser: argparse.ArgumentParser,
                          kind: type[StageSettings] = Settings) -> None:
    for field in flag_fields(kind):
        info = kind.model_fields[field]
        parser.add_argument(
            _flag(field), dest=field, default=None, metavar="VALUE",
            help=f"{info.description} [env: {env_name(field, kind)}; "
                 f"default: {_default_text(info.default)}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="processor",
        description="Enrich Segment Identify events from Kafka with Clearbit data "
                    "(a re-creation of Segment's Clearbit Enrichment destination).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", help="run the enrichment stage until SIGTERM/SIGINT",
        description="Run the enrichment stage until SIGTERM or SIGINT. Every option falls back "
                    "to its environment variable. Any librdkafka property can be passed as "
                    "PROCESSOR_KAFKA_<PROPERTY> (all clients), PROCESSOR_KAFKA_CONSUMER_<...> "
                    "or PROCESSOR_KAFKA_PRODUCER_<...>: underscores become dots, e.g. "
                    "PROCESSOR_KAFKA_SECURITY_PROTOCOL=SASL_SSL. Secrets are read from the "
                    f"environment only, never from flags: {', '.join(secret_variables())}.",
    )
    _add_settings_options(run)
    run.set_defaults(handler=_run)

    from processor.entrypoints.replay import add_replay_command  # noqa: PLC0415 - keeps startup small

    add_replay_command(commands)
    _add_conversions_command(commands)
    return parser


def _add_conversions_command(commands: Any) -> None:
    from processor.entrypoints.conversion_settings import (  # noqa: PLC0415
        ConversionSettings,
    )

    conversions = commands.add_parser(
        "conversions", help="run the conversions stage until SIGTERM/SIGINT",
        description="Run the conversions stage: remember the ad click IDs visitors arrived "
                    "with, learn who they are from identify calls, and write one conversion "
                    "for each entry into an audience. Every option falls back to its "
                    "environment variable; librdkafka properties pass through as for run. "
                    "`processor conversions topics` prints the topics it needs.")
    _add_settings_options(conversions, ConversionSettings)
    conversions.set_defaults(handler=_conversions, kind=ConversionSettings)
    tools = conversions.add_subparsers(dest="tool", metavar="TOOL")
    topics = tools.add_parser(
        "topics", help="print the topics the stage needs (name, partitions, cleanup policy)",
        description="Print every topic the conversions stage reads or writes, with the "
                    "partitions and cleanup policy it needs, as the stage checks them at "
                    "start. The stage never creates topics.")
    topics.set_defaults(handler=_conversion_topics)
    from processor.entrypoints.sender import add_send_command  # noqa: PLC0415

    add_send_command(tools)


def _conversions(args: argparse.Namespace) -> int:
    from processor.entrypoints.conversions import run  # noqa: PLC0415 - Kafka only when needed

    return run(load_as(args.kind, overrides(args, args.kind)), args.stop)


def _conversion_topics(args: argparse.Namespace) -> int:
    from processor.entrypoints.conversions import print_topics  # noqa: PLC0415

    return print_topics(load_as(args.kind, overrides(args, args.kind)))


def overrides(args: argparse.Namespace, kind: type[StageSettings] = Settings) -> dict[str, Any]:
    """The settings given as flags (those not given fall back to the environment)."""
    return {f: getattr(args, f) for f in flag_fields(kind) if getattr(args, f, None) is not None}


def _run(args: argparse.Namespace) -> int:
    stop: StopRequest = args.stop
    settings = load(overrides(args))
    settings.check_api_key()
    from processor.adapters import logs  # noqa: PLC0415
    from processor.entrypoints.bootstrap import assemble, preflight  # noqa: PLC0415 - Kafka only when needed
    from processor.entrypoints.running import checked, run_stage  # noqa: PLC0415

    logs.configure(settings.log_level, settings.log_format)
    if not checked(lambda: preflight(settings), stop):
        return 0
    assembly = assemble(settings, stop=stop)
    log.info("starting: %s -> %s (dead letters: %s), group %s, provider %s, %s, "
             "%d lookups in flight at most", settings.input_topic, settings.output_topic,
             settings.dlq_topic, settings.group_id, settings.provider.value,
             settings.delivery.value, settings.max_in_flight)
    return run_stage(assembly.stage, [assembly.metrics, assembly.lag])


def main(argv: Sequence[str] | None = None, stop: StopRequest | None = None) -> int:
    """The command. ``processor.entrypoints.console`` (the console script and ``python -m
    processor``) installs the signal handlers before importing this module and passes them
    in as ``stop``; called without, it installs them itself."""
    if stop is None:
        stop = StopRequest()
        stop.install()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.stop = stop
    try:
        code: int = args.handler(args)
    except ConfigError as error:
        for line in str(error).splitlines():
            print(f"processor: configuration error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as caught:
        log.debug("the failure in full", exc_info=caught)
        return _fatal(caught if isinstance(caught, FatalError)
                      else UnexpectedError.of(caught, f"processor {args.command}"))
    except KeyboardInterrupt:
        return 130
    return code


def _fatal(error: FatalError) -> int:
    log.error("stopping after a fatal error: %s", error)
    print(f"processor: fatal: {error}", file=sys.stderr)
    return error.exit_code
