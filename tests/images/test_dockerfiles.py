"""One skeleton for every runner Dockerfile (issue 17, item 9).

The runner Dockerfiles repeat the same steps on purpose: each must stay a plain
Dockerfile that ``docker build -f`` takes as it is (a site builds them without
edgebench). So instead of a template, this test keeps the repeated blocks
identical, and a change to one is a change to all:

- the *runtime block*, from ``COPY edgebench/runner`` to the end (compile the
  runner, the user, the environment, the entrypoint, the labels), is the same
  in every runner image (GPU, CPU, Jetson, 2019 and current stacks), up to the
  values that name the image (title, description, backend, variant, platforms,
  Python, CUDA line) and the NVIDIA_DRIVER_CAPABILITIES line (GPU and Jetson
  images only, and L4T asks for all of them);
- the *install block*, from ``COPY images/common/`` to ``COPY edgebench/runner``,
  is the same in the four current stacks' GPU images, and the same in their
  four CPU images (which also byte-compile on the builder's platform, for
  arm64 builds under QEMU), up to the CPU torch images' extra index.

A failure prints the differing lines against the form most files share.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from pathlib import Path

import pytest

from edgebench.controller.images import catalogue

ROOT = Path(__file__).resolve().parents[2]
SPECS = catalogue()
RUNNERS = sorted((s for s in SPECS.values() if s.backend != "agent"), key=lambda s: s.name)
CURRENT = ("keras-jax", "keras-tensorflow", "keras-torch", "torch")

_NAMING_LABELS = re.compile(
    r'^(\s*(?:LABEL )?(?:org\.opencontainers\.image\.(?:title|description)|edgebench\.(?:backend|variant|platforms|'
    r'python|frameworks))=)"[^"]*"')


def _text(name: str) -> str:
    return (ROOT / SPECS[name].dockerfile).read_text()


def runtime_block(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("COPY edgebench/runner"))
    out = []
    for line in lines[start:]:
        if "NVIDIA_DRIVER_CAPABILITIES" in line or line.startswith("# L4T: NVIDIA's own l4t images"):
            continue
        if re.fullmatch(r"ARG (FRAMEWORKS|SUPPORT|JETSON_WHEELS)", line):
            continue  # multi-stage Dockerfiles bring a global ARG into the last stage
        line = re.sub(r"^ARG CUDA=.*$", "ARG CUDA=<cuda>", line)
        line = _NAMING_LABELS.sub(r'\1"<value>"', line)
        out.append(line)
    return out


def install_block(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("COPY images/common/"))
    end = next(i for i, line in enumerate(lines) if line.startswith("COPY edgebench/runner"))
    # the lock each image installs under is its own (tests/test_locks.py checks those lines)
    return [line.replace('${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} ', "")
            for line in lines[start:end]
            if not line.startswith(("ARG PIP_CONSTRAINT=", "# every package pinned (scripts/lock_images.py)"))]


def _check_same(blocks: dict[str, list[str]], what: str) -> None:
    common, _ = Counter(tuple(b) for b in blocks.values()).most_common(1)[0]
    odd = {name: b for name, b in blocks.items() if tuple(b) != common}
    report = [f"{name}: the {what} differs from the one the other Dockerfiles share:\n" + "\n".join(
        difflib.unified_diff(list(common), b, "shared", name, lineterm="")) for name, b in odd.items()]
    assert not odd, "\n\n".join(report)


def test_every_runner_dockerfile_has_the_same_runtime_block() -> None:
    blocks = {s.name: runtime_block(_text(s.name)) for s in RUNNERS}
    assert len(blocks) == 17 and len(next(iter(blocks.values()))) >= 30
    _check_same(blocks, "runtime block")


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_current_stack_dockerfiles_have_the_same_install_block(variant: str) -> None:
    names = [s.name for s in RUNNERS if s.backend in CURRENT and s.variant == variant]
    assert len(names) == 4
    _check_same({n: install_block(_text(n)) for n in names}, "install block")


def test_multiarch_dockerfiles_compile_bytecode_on_the_builder() -> None:
    for name in ("agent", "keras-jax-cpu", "keras-tensorflow-cpu", "keras-torch-cpu", "torch-cpu"):
        text = _text(name)
        assert "FROM --platform=$BUILDPLATFORM ${BUILD_BASE_IMAGE} AS bytecode-cross" in text, name
        assert "pip-install.sh --no-compile" in text and "COPY --from=bytecode /pyc/ /" in text, name
        assert SPECS[name].args["BYTECODE"] == "native", name


def test_the_check_sees_a_drifted_copy() -> None:
    text = _text("keras-jax")
    drifted = text.replace("PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0")
    with pytest.raises(AssertionError, match="keras-jax-drifted"):
        _check_same({"keras-jax": runtime_block(text), "torch": runtime_block(_text("torch")),
                     "keras-jax-drifted": runtime_block(drifted)}, "runtime block")
