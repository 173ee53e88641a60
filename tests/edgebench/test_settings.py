"""Settings from flags, environment, secret files and YAML (edgebench/common/settings.py):
every source for every kind of field, and the order of precedence
flag > env > secret file > YAML > default, on the agent's and the controller's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.agent.config import AgentConfig, DockerBackend, LocalBackend
from edgebench.common.errors import UsageError
from edgebench.controller.config import ControllerConfig


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("EDGEBENCH_") and name != "EDGEBENCH_VENVS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("EDGEBENCH_SECRETS_DIR", str(tmp_path / "no-secrets-here"))
    (tmp_path / "no-secrets-here").mkdir()


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def _secrets(tmp_path: Path, **files: str) -> Path:
    root = tmp_path / "secrets"
    root.mkdir(exist_ok=True)
    for name, value in files.items():
        (root / name).write_text(value + "\n")
    return root


def test_precedence_flag_env_secret_yaml_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaml_file = _yaml(tmp_path, "device_id: from-yaml\nusername: yaml-user\npassword: yaml-pw\nfleet: yamlfleet\n"
                                "broker_url: mqtt://yaml:1883\n")
    secrets = _secrets(tmp_path, edgebench_password="secret-pw", edgebench_username="secret-user",
                       edgebench_fleet="secretfleet")
    monkeypatch.setenv("EDGEBENCH_USERNAME", "env-user")
    monkeypatch.setenv("EDGEBENCH_FLEET", "envfleet")
    cfg = AgentConfig.load(yaml_file, secrets, fleet="flagfleet")
    assert cfg.fleet == "flagfleet"  # flag over env, secret and YAML
    assert cfg.username == "env-user"  # env over secret and YAML
    assert cfg.password == "secret-pw"  # secret file over YAML (the trailing newline is stripped)
    assert cfg.device_id == "from-yaml"  # YAML over the default
    assert cfg.broker_url == "mqtt://yaml:1883"
    assert cfg.max_payload_bytes == 256 * 1024  # the default
    assert isinstance(cfg, AgentConfig)


def test_nested_and_list_fields_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaml_file = _yaml(tmp_path, "device_id: box\nbackends:\n  torch:\n    python: /opt/torch/bin/python\n")
    monkeypatch.setenv("EDGEBENCH_TAGS", '["line3", "gtx1060"]')
    monkeypatch.setenv("EDGEBENCH_BACKENDS__TORCH__ENV", '{"OMP_NUM_THREADS": "2"}')
    monkeypatch.setenv("EDGEBENCH_BACKENDS__KERAS-JAX", '{"executor": "docker", "image": "edgebench/keras-jax:1"}')
    monkeypatch.setenv("EDGEBENCH_SAMPLE_INTERVAL_S", "0.5")
    cfg = AgentConfig.load(yaml_file)
    assert cfg.tags == ["line3", "gtx1060"]
    torch = cfg.backends["torch"]
    assert isinstance(torch, LocalBackend)
    assert torch.python == "/opt/torch/bin/python" and torch.env == {"OMP_NUM_THREADS": "2"}  # merged, not replaced
    assert isinstance(cfg.backends["keras-jax"], DockerBackend)
    assert cfg.sample_interval_s == 0.5


def test_the_older_short_names_still_work_below_the_full_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBENCH_BROKER", "mqtt://short:1883")
    monkeypatch.setenv("EDGEBENCH_STORE", "sqlite:////tmp/short.db")
    monkeypatch.setenv("EDGEBENCH_FLEET", "shortfleet")
    cfg = ControllerConfig.load()
    assert (cfg.broker_url, cfg.store_url, cfg.fleet) == ("mqtt://short:1883", "sqlite:////tmp/short.db",
                                                          "shortfleet")
    monkeypatch.setenv("EDGEBENCH_BROKER_URL", "mqtt://full:1883")
    assert ControllerConfig.load().broker_url == "mqtt://full:1883"
    assert ControllerConfig.load(broker_url="mqtt://flag:1883").broker_url == "mqtt://flag:1883"


def test_config_file_from_the_environment_and_controller_secrets(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBENCH_CONFIG", str(_yaml(tmp_path, "fleet: plant\nusername: ops\n")))
    monkeypatch.setenv("EDGEBENCH_SECRETS_DIR", str(_secrets(tmp_path, edgebench_password="hunter2")))
    cfg = ControllerConfig.load()
    assert (cfg.fleet, cfg.username, cfg.password) == ("plant", "ops", "hunter2")


def test_default_secrets_directory_is_used_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgebench.common.settings as settings

    monkeypatch.delenv("EDGEBENCH_SECRETS_DIR")
    monkeypatch.setattr(settings, "DEFAULT_SECRETS_DIR", _secrets(tmp_path, edgebench_password="from-run-secrets"))
    assert AgentConfig.load(None, device_id="box").password == "from-run-secrets"


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", "expected a mapping"),
    ("device_id: [unclosed\n", "not valid YAML"),
])
def test_bad_yaml_is_a_one_line_usage_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        AgentConfig.load(_yaml(tmp_path, text))


def test_missing_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        AgentConfig.load(tmp_path / "nope.yaml", device_id="box")
    with pytest.raises(UsageError, match="secrets directory"):
        AgentConfig.load(None, tmp_path / "no-such-dir", device_id="box")


def test_plain_construction_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The models themselves stay plain: only load() reads the outside world."""
    monkeypatch.setenv("EDGEBENCH_BROKER_URL", "mqtt://env:1883")
    assert ControllerConfig().broker_url == "mqtt://127.0.0.1:1883"
    assert AgentConfig(device_id="box").broker_url == "mqtt://127.0.0.1:1883"
