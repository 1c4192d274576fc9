"""The schema registry client: the few calls the stage makes, its errors translated."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any, Protocol

from processor.adapters.avro.schemas import COMPATIBILITY
from processor.core.errors import ConfigError, FatalError

# Authlib (which the registry client imports) warns that plain httpx is deprecated in
# favour of httpx2; that is the client's business, not this stage's, so it is recorded
# here and dropped instead of reaching every log and test run.
# Tests take ``Schema`` and ``SchemaRegistryError`` from here, for the same reason.
with warnings.catch_warnings(record=True):
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    from processor.adapters.library_internals import registry_transport_error

log = logging.getLogger(__name__)

_CLIENT_CONFIG = {"timeout": 5, "max.retries": 3, "retries.wait.ms": 250,
                  "retries.max.wait.ms": 2000}
_NOT_FOUND_CODES = {40403}  # "schema not found", the answer for an unknown id

__all__ = ["Registry", "Schema", "SchemaRegistry", "SchemaRegistryClient", "SchemaRegistryError",
           "subject_for"]

def subject_for(topic: str) -> str:
    """TopicNameStrategy: the subject of a topic's values."""
    return f"{topic}-value"


def _redacted(url: str) -> str:
    return re.sub(r"//[^/@\s]*@", "//***@", url)


class SchemaRegistry:
    """The few registry calls this stage makes, with the registry's errors translated into
    this package's. Each call uses a client of its own, closed at once: calls are rare (at
    start, and once per new schema id), and no connection outlives them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = {**_CLIENT_CONFIG, **config}
        self.where = f"SCHEMA_REGISTRY_URL={_redacted(str(config.get('url', '')))}"
        with self._client():  # the client checks its configuration when it is built
            pass

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        try:
            client = SchemaRegistryClient(self._config)
        except (ValueError, TypeError, OSError) as error:
            raise ConfigError(f"schema registry settings: {error} (SCHEMA_REGISTRY_URL, "
                              "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO, "
                              "SCHEMA_REGISTRY_SSL_CA_LOCATION)") from None
        try:
            yield client
        finally:
            client.close()

    def probe(self) -> None:
        """Fail at start, not at the first record, when the registry cannot be used."""
        with self._at_start("reading the global compatibility level"), self._client() as c:
            c.get_compatibility()

    def register(self, subject: str, text: str, *, auto_register: bool = True) -> int:
        """The id of schema ``text`` under ``subject``: registered (auto_register), else
        looked up. A subject without a compatibility level of its own gets ``COMPATIBILITY``."""
        schema = Schema(text, "AVRO")
        with self._client() as client:
            if not auto_register:
                return self._look_up(client, subject, schema)
            with self._at_start(f"reading the compatibility level of {subject}"):
                level = self._compatibility(client, subject)
            if level is None:
                try:
                    with self._at_start(f"setting compatibility {COMPATIBILITY} on {subject}"):
                        client.set_compatibility(subject, COMPATIBILITY)
                    level = COMPATIBILITY
                except ConfigError as error:  # a registry that forbids it: its owners decide
                    log.warning("%s; registering anyway", error)
            with self._at_start(f"registering the output schema under {subject} "
                                f"(compatibility {level or 'as configured'})"):
                schema_id = int(client.register_schema(subject, schema))
        log.info("output schema registered: subject %s, id %d, compatibility %s", subject,
                 schema_id, level or "as configured")
        return schema_id

    def _look_up(self, client: Any, subject: str, schema: Any) -> int:
        with self._at_start(f"looking up the output schema under {subject}"):
            try:
                return int(client.lookup_schema(subject, schema).schema_id)
            except SchemaRegistryError as error:
                if error.http_status_code != 404 or error.error_code not in (40401, 40403):
                    raise
        raise ConfigError(f"the output schema is not registered under {subject} in the "
                          f"schema registry ({self.where}) and SCHEMA_REGISTRY_AUTO_REGISTER "
                          "is false: register schemas/identify-enriched.avsc there first")

    @staticmethod
    def _compatibility(client: Any, subject: str) -> str | None:
        try:
            return str(client.get_compatibility(subject))
        except SchemaRegistryError as error:
            if error.http_status_code == 404:  # no level of its own (or no subject yet)
                return None
            raise

    def writer_schema(self, schema_id: int) -> Any | None:
        """The registry's schema with this id, or None when it says there is none. Raises
        ``FatalError`` when it cannot answer (nothing may be dead-lettered for that)."""
        try:
            with self._client() as client:
                return client.get_schema(schema_id)
        except SchemaRegistryError as error:
            if error.http_status_code == 404 and error.error_code in _NOT_FOUND_CODES:
                return None
            raise FatalError(f"the schema registry ({self.where}) answered HTTP "
                             f"{error.http_status_code} for schema id {schema_id}: "
                             f"{error.error_message}") from None
        except (registry_transport_error(), ValueError, KeyError, TypeError) as error:
            raise FatalError(f"the schema registry ({self.where}) could not be asked for "
                             f"schema id {schema_id}: {type(error).__name__}: {error}") from None

    @contextlib.contextmanager
    def _at_start(self, doing: str) -> Iterator[None]:
        """Registry errors at start as ``ConfigError`` (a human must act) or ``FatalError``
        (the registry is down: a later start may work)."""
        try:
            yield
        except SchemaRegistryError as error:
            status, message = error.http_status_code, error.error_message
            hint = {401: "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
                    403: "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO and the registry's ACLs",
                    404: "is it the registry's Confluent-compatible API root? (Apicurio: "
                         "<base>/apis/ccompat/v7)",
                    409: "the schema is not compatible with the versions already registered "
                         "under this subject; add optional fields with a null default only",
                    422: "the registry refused the schema as invalid"}.get(status)
            if status >= 500 or status in (408, 429):
                raise FatalError(f"schema registry ({self.where}) failed while {doing}: "
                                 f"HTTP {status}: {message}") from None
            raise ConfigError(f"schema registry ({self.where}) refused {doing}: HTTP {status}: "
                              f"{message}" + (f"; {hint}" if hint else "")) from None
        except registry_transport_error() as error:
            raise FatalError(f"schema registry ({self.where}) unreachable while {doing}: "
                             f"{type(error).__name__}: {error}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{self.where} did not answer like a schema registry while "
                              f"{doing} ({type(error).__name__}: {error}); it must be the "
                              "root of a Confluent-compatible REST API") from None


class Registry(Protocol):
    """What readers and writers need of a registry (``SchemaRegistry``, or a test's fake)."""

    def register(self, subject: str, text: str, *, auto_register: bool = True) -> int: ...
    def writer_schema(self, schema_id: int) -> Any | None: ...


# --- reading -----------------------------------------------------------------------------
