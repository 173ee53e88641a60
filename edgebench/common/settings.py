"""Loading a typed configuration the way deployments expect (pydantic-settings).

Each field of the agent's and the controller's configuration can be set, from
the highest precedence to the lowest:

1. a command-line flag (``--broker``, ``--device-id`` ...);
2. an environment variable: ``EDGEBENCH_<FIELD>``, nested fields joined by
   ``__`` (``EDGEBENCH_BACKENDS__TORCH__PYTHON``), lists and mappings as JSON
   (``EDGEBENCH_TAGS='["line3","gtx1060"]'``); the short names of earlier
   releases (``EDGEBENCH_BROKER``, ``EDGEBENCH_STORE``, ``EDGEBENCH_FLEET``)
   still work, below the full names;
3. a secret file: a file named ``edgebench_<field>`` in the secrets directory
   (``/run/secrets``, where Docker and Kubernetes mount secrets, or
   ``EDGEBENCH_SECRETS_DIR``), holding the value: passwords and keys stay out of
   the environment, the YAML file and ``ps``;
4. the YAML file (``--config``, or ``EDGEBENCH_CONFIG``);
5. the default.

The environment is above the file so that one image or unit file serves many
boxes: the YAML says what is common, the environment what differs. Secrets are
above the YAML so that a mounted secret is never shadowed by a placeholder left
in a shared file.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from edgebench.common.errors import UsageError

ENV_PREFIX = "EDGEBENCH_"
CONFIG_ENV = "EDGEBENCH_CONFIG"
SECRETS_ENV = "EDGEBENCH_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")

# The YAML file of the load() in progress: settings_customise_sources is a
# classmethod and cannot be given it as an argument.
_yaml_file: ContextVar[Path | None] = ContextVar("_yaml_file", default=None)

S = TypeVar("S", bound="FileSettings")


class _AliasEnv(PydanticBaseSettingsSource):
    """The older short environment names (``EDGEBENCH_BROKER`` for ``broker_url``)."""

    def __init__(self, settings_cls: type[BaseSettings], aliases: dict[str, str]):
        super().__init__(settings_cls)
        self.aliases = aliases

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ does the work

    def __call__(self) -> dict[str, Any]:
        return {name: os.environ[env] for env, name in self.aliases.items() if os.environ.get(env)}


class FileSettings(BaseSettings):
    """A configuration model (mixed in after this class) loaded from flags, env, secrets and YAML."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
                                      case_sensitive=False, env_ignore_empty=True)
    ENV_ALIASES: ClassVar[dict[str, str]] = {}

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings,
                                                     _AliasEnv(settings_cls, cls.ENV_ALIASES), file_secret_settings]
        path = _yaml_file.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls: type[S], path: Path | None = None, secrets_dir: Path | None = None, **flags: object) -> S:
        """The configuration from every source; ``flags`` that are None were not given."""
        path = path or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
        if path is None:
            path = cls.default_path()
        if path is not None:
            _check_yaml(path)
        secrets = secrets_dir or (Path(os.environ[SECRETS_ENV]) if os.environ.get(SECRETS_ENV) else None)
        if secrets is not None and not secrets.is_dir():
            raise UsageError(f"secrets directory {secrets} does not exist")
        if secrets is None and DEFAULT_SECRETS_DIR.is_dir():
            secrets = DEFAULT_SECRETS_DIR
        token = _yaml_file.set(path)
        try:
            return cls(_secrets_dir=secrets, **{k: v for k, v in flags.items() if v is not None})  # type: ignore[arg-type]
        finally:
            _yaml_file.reset(token)

    @classmethod
    def default_path(cls) -> Path | None:
        """The YAML file read when none is named (None: no file)."""
        return None


def _check_yaml(path: Path) -> None:
    """A named YAML file must exist and hold a mapping (pydantic-settings would skip a missing one silently)."""
    import yaml

    if not path.is_file():
        raise UsageError(f"configuration file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise UsageError(f"{path}: expected a mapping at the top level")
