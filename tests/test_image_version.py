"""The agent image names the version it was built as (no .git in the build context), and
image tags are valid Docker tags: edgebench/common/version.py docker_tag and images/agent/Dockerfile."""

from __future__ import annotations

from typing import Any

import pytest
from packaging.version import Version

from edgebench.common.version import docker_tag, edgebench_version
from tests.images.fixtures import agent_image, docker_client  # noqa: F401


def test_docker_tag_is_a_valid_tag_and_maps_back() -> None:
    import re

    tag = docker_tag("0.0.1.dev115+gb86d749.d20261201")
    assert tag == "0.0.1.dev115-gb86d749.d20261201"
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", docker_tag())  # Docker's tag grammar
    assert Version(tag.replace("-", "+", 1)) == Version("0.0.1.dev115+gb86d749.d20261201")
    assert docker_tag() == edgebench_version().replace("+", "-")


@pytest.mark.docker
def test_the_agent_image_reports_the_version_of_its_tag(docker_client: Any, agent_image: Any) -> None:  # noqa: F811
    out = docker_client.containers.run(agent_image.tag, entrypoint=["agent", "--version"], remove=True,
                                       network_mode="none")
    assert out.decode().strip() == "agent (edgebench) 0.0.0+test"  # the fixtures' tag 0.0.0-test
