"""The ImageNet streaming loader on real (tiny) JPEG folders, and ResNet-50 runs streaming from it."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from edgebench.runner import imagenet
from edgebench.runner.errors import DataMissing, Unsupported
from tests.runner.runjob import job, of_type, run_job, write_tiny_imagenet

pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_imagenet(tmp_path_factory.mktemp("datasets"), classes=3, per_class=3)


def test_lists_sorted_classes_as_labels(tiny_root: Path) -> None:
    paths, labels, classes = imagenet.list_files(str(tiny_root))
    assert classes == sorted(classes) and len(classes) == 3
    assert len(paths) == 9 and sorted(set(labels)) == [0, 1, 2]
    for path, label in zip(paths, labels):
        assert Path(path).parent.name == classes[label]


def test_batches_shape_dtype_range_and_labels(tiny_root: Path) -> None:
    with imagenet.ImageFolderStream(str(tiny_root), batch_size=4, seed=0, workers=2) as stream:
        batches = [next(stream) for _ in range(5)]  # 20 images from 9 files: wraps around twice
    for x, y in batches:
        assert x.shape == (4, 224, 224, 3) and x.dtype == np.float32
        assert y.shape == (4,) and y.dtype == np.int32
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.1  # random pixels, decoded
        assert set(y.tolist()) <= {0, 1, 2}
    labels = np.concatenate([y for _, y in batches])
    # the first pass shows every file once
    assert sorted(labels[:9].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_seeded_order_is_reproducible_and_channels_first(tiny_root: Path) -> None:
    def first(seed: int, **kwargs):
        with imagenet.ImageFolderStream(str(tiny_root), batch_size=3, seed=seed, **kwargs) as stream:
            return next(stream)

    x0, y0 = first(0)
    x1, y1 = first(0, workers=3, channels_first=True)
    assert np.array_equal(y0, y1) and x1.shape == (3, 3, 224, 224)
    assert np.array_equal(x0.transpose(0, 3, 1, 2), x1)
    orders = {tuple(imagenet.ImageFolderStream(str(tiny_root), 3, seed=s).order) for s in range(5)}
    assert len(orders) > 1


def test_decode_resizes_short_side_and_centre_crops(tmp_path: Path) -> None:
    from PIL import Image

    # a wide image: left third black, centre white, right third black
    pixels = np.zeros((240, 720, 3), dtype=np.uint8)
    pixels[:, 240:480] = 255
    path = tmp_path / "wide.JPEG"
    Image.fromarray(pixels).save(path, quality=95)
    out = imagenet.decode(Image, str(path), 224)
    assert out.shape == (224, 224, 3)
    assert out[:, 20:-20].mean() > 240  # the white centre, not the whole squeezed image


def test_samples_caps_the_stream_and_take(tiny_root: Path) -> None:
    stream = imagenet.ImageFolderStream(str(tiny_root), batch_size=2, samples=4)
    assert len(stream) == 4
    x, y = imagenet.infer_arrays(stream, samples=4)
    assert x.shape == (4, 224, 224, 3) and y.shape == (4,)


def test_data_parallel_ranks_stream_disjoint_shards(tiny_root: Path) -> None:
    shards = [imagenet.ImageFolderStream(str(tiny_root), 2, rank=r, world_size=2) for r in (0, 1)]
    assert [len(s) for s in shards] == [5, 4] and all(s.total_samples == 9 for s in shards)
    assert sorted(shards[0].order + shards[1].order) == list(range(9))
    with pytest.raises(DataMissing, match="fewer than the 10"):
        imagenet.ImageFolderStream(str(tiny_root), 2, rank=9, world_size=10)


def test_missing_folder_names_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(DataMissing) as info:
        imagenet.ImageFolderStream(str(tmp_path), batch_size=2)
    assert str(tmp_path / "imagenet" / "train") in str(info.value)


def test_empty_folder_is_data_missing(tmp_path: Path) -> None:
    (tmp_path / "imagenet" / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "imagenet" / "train" / "n01440764" / "README.txt").write_text("no images")
    with pytest.raises(DataMissing, match="empty"):
        imagenet.list_files(str(tmp_path))


def test_corrupt_jpeg_is_data_missing_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "imagenet" / "train" / "n01440764"
    folder.mkdir(parents=True)
    (folder / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with imagenet.ImageFolderStream(str(tmp_path), batch_size=1) as stream:
        with pytest.raises(DataMissing, match=r"broken\.JPEG"):
            next(stream)


def test_without_pillow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    with pytest.raises(Unsupported, match="pip install pillow"):
        imagenet.pillow()


def test_runner_reports_missing_imagenet(tmp_path: Path) -> None:
    rc, messages, _ = run_job(job("torch", "resnet50", "imagenet"), tmp_path)
    assert rc == 2 and messages[-1]["error_type"] == "DataMissing"
    assert str(tmp_path / "imagenet" / "train") in messages[-1]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras-jax"])
def test_resnet50_streams_from_the_folder(backend: str, tiny_root: Path, tmp_path: Path) -> None:
    spec = job(backend, "resnet50", "imagenet", workload={"steps_per_epoch": 2})
    rc, messages, stderr = run_job(spec, tmp_path, dataset_root=tiny_root, timeout_s=600)
    assert rc == 0, stderr[-3000:]
    assert of_type(messages, "data")[0]["source"] == "real"
    assert of_type(messages, "data")[0]["samples"] == 9
    result = messages[-1]
    assert result["type"] == "result" and result["data_source"] == "real"
    assert result["knobs"]["data"].startswith(("Pillow decode", "streamed (Pillow decode"))
    epochs = result["runs"][0]["epochs"]
    assert [e["batches"] for e in epochs] == [2, 2] and [e["images"] for e in epochs] == [4, 4]
    assert all(math.isfinite(e["loss"]) for e in epochs)
