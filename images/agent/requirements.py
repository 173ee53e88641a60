"""Print the agent image's requirements from pyproject.toml, one per line:
the build-system requirements, the project's dependencies and the named extras.

    python requirements.py pyproject.toml docker

The image installs these in a layer of their own before copying the sources,
so that a change to the code does not re-download every dependency.
"""

import sys

import tomllib


def main(path: str, *extras: str) -> None:
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    project = doc["project"]
    lines = [*doc["build-system"]["requires"], *project["dependencies"]]
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
