"""Tests of the MobileNetV2 classifier: config, preprocessing, weights handling and training runs."""

from __future__ import annotations

import csv
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from evaluation.classifier import (
    BASE_LAYER_NAME,
    EvalConfig,
    WeightsUnavailableError,
    balanced_class_weight,
    build_classifier,
    package_versions,
    preprocess,
    train_and_evaluate,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_mammograms(label: str, cases: list[str], size: int = 64) -> np.ndarray:
    """Read the mini-DDSM sample images of the given cases as a (N, size, size) uint8 stack."""
    from PIL import Image

    sample = DATA / "mammo-sample"
    with open(sample / "manifest.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["label"] == label]
    images = []
    for row in rows:
        if row["path"].split("/")[1] not in cases:
            continue
        with Image.open(sample / row["path"]) as image:
            image.draft("L", (size * 4, size * 4))
            images.append(np.asarray(image.convert("L").resize((size, size), Image.BILINEAR)))
    return np.stack(images)


def test_config_round_trips_through_dict() -> None:
    config = EvalConfig(image_size=64, weights="none", alpha=0.35, epochs=3, class_weight=None)

    restored = EvalConfig.from_dict(config.to_dict())

    assert restored == config
    assert restored.to_dict()["alpha"] == 0.35


def test_config_from_dict_rejects_unknown_field() -> None:
    with pytest.raises(ValueError, match="unknown EvalConfig fields: learning_rat"):
        EvalConfig.from_dict({"learning_rat": 0.1})


def test_config_from_dict_treats_none_weights_as_none() -> None:
    assert EvalConfig.from_dict({"weights": None}).weights == "none"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"image_size": 16}, "at least 32"),
        ({"weights": "imagenet", "alpha": 0.6}, "alpha in"),
        ({"weights": "model.pt"}, "weights must be"),
        ({"dropout": 1.0}, "dropout"),
        ({"class_weight": "auto"}, "class_weight"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_config_rejects_invalid_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvalConfig(**settings)


def test_preprocess_scales_and_repeats_channels() -> None:
    images = np.array([[[0, 255], [127, 128]]], dtype=np.uint8)
    original = images.copy()

    result = preprocess(images)

    assert result.dtype == np.float32
    assert result.shape == (1, 2, 2, 3)
    assert result[0, 0, 0, 0] == -1.0
    assert result[0, 0, 1, 2] == 1.0
    assert result[0, 1, 0, 1] == pytest.approx(127 / 127.5 - 1)
    assert np.array_equal(result[..., 0], result[..., 2])
    assert np.array_equal(images, original)


def test_preprocess_resizes_channel_last_input() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(3, 50, 30, 1), dtype=np.uint8)
    original = images.copy()

    result = preprocess(images, image_size=64)

    assert result.shape == (3, 64, 64, 3)
    assert result.dtype == np.float32
    assert result.min() >= -1.0
    assert result.max() <= 1.0
    assert np.array_equal(images, original)
    # A uniform image stays uniform after resizing.
    flat = preprocess(np.full((1, 50, 30), 200, dtype=np.uint8), image_size=64)
    assert np.allclose(flat, 200 / 127.5 - 1, atol=1e-5)


def test_preprocess_rejects_float_images() -> None:
    with pytest.raises(TypeError, match="uint8"):
        preprocess(np.zeros((1, 8, 8), dtype=np.float32))


def test_balanced_class_weight_equalises_classes() -> None:
    weights = balanced_class_weight(np.array([0, 0, 0, 1]))

    assert weights == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
    assert weights[0] * 3 == pytest.approx(weights[1] * 1)


def test_build_classifier_without_weights_has_one_sigmoid_output() -> None:
    config = EvalConfig(image_size=64, weights="none", alpha=0.35)

    model = build_classifier(config)

    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    probabilities = model.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_build_classifier_with_three_classes_uses_softmax() -> None:
    model = build_classifier(EvalConfig(image_size=64, weights="none", alpha=0.35), num_classes=3)

    assert model.output_shape == (None, 3)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_imagenet_download_failure_raises_weights_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    def fail_download(*args: object, **kwargs: object) -> str:
        # Keras 3.15 wraps URLError in a bare Exception with this text.
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
            "[Errno -2] Name or service not known"
        )

    monkeypatch.setattr(keras.utils, "get_file", fail_download)

    with pytest.raises(WeightsUnavailableError) as raised:
        build_classifier(EvalConfig(image_size=64, weights="imagenet", alpha=0.35))

    message = str(raised.value)
    assert "\n" not in message
    assert "Name or service not known" in message
    assert "weights='none'" in message
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5" in message
    assert raised.value.__cause__ is None


def test_imagenet_offline_through_keras_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    # An empty Keras home, so that no cached weights file can satisfy the request.
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)

    with pytest.raises(WeightsUnavailableError, match="Temporary failure in name resolution"):
        build_classifier(EvalConfig(image_size=128, weights="imagenet", alpha=0.35))
    assert not (tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_128_no_top.h5").exists()


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.weights.h5"

    with pytest.raises(WeightsUnavailableError, match="absent.weights.h5"):
        build_classifier(EvalConfig(image_size=64, weights=str(missing), alpha=0.35))


def test_local_weights_files_load_into_base(tmp_path: Path) -> None:
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), alpha=0.35, include_top=False, pooling="avg", weights=None
    )
    keras_format = tmp_path / "base.weights.h5"
    source.save_weights(keras_format)
    # The legacy layout is the one of Keras' published *_no_top.h5 files.
    legacy_format = tmp_path / "base_no_top.h5"
    with h5py.File(legacy_format, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)

    for path in (keras_format, legacy_format):
        model = build_classifier(EvalConfig(image_size=96, weights=str(path), alpha=0.35))
        loaded = model.get_layer(BASE_LAYER_NAME).get_weights()
        assert len(loaded) == len(source.get_weights())
        assert all(np.array_equal(a, b) for a, b in zip(loaded, source.get_weights()))


def test_weights_file_of_other_alpha_raises(tmp_path: Path) -> None:
    import keras

    source = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), alpha=0.5, include_top=False, pooling="avg", weights=None
    )
    path = tmp_path / "alpha050.weights.h5"
    source.save_weights(path)

    with pytest.raises(WeightsUnavailableError, match="alpha 0.35"):
        build_classifier(EvalConfig(image_size=64, weights=str(path), alpha=0.35))


def test_train_rejects_single_class_training_set() -> None:
    images = np.zeros((4, 64, 64), np.uint8)
    config = EvalConfig(image_size=64, weights="none", alpha=0.35, epochs=1)

    with pytest.raises(ValueError, match="both labels"):
        train_and_evaluate(images, [1, 1, 1, 1], images[:0], [], images, [0, 1, 0, 1], config, seed=0)


def test_package_versions_names_frameworks() -> None:
    versions = package_versions()

    assert set(versions) == {"tensorflow", "keras", "numpy"}
    assert versions["keras"].startswith("3.")
    assert versions["numpy"] == np.__version__


@pytest.mark.slow
def test_tiny_real_run_on_mini_ddsm() -> None:
    if not (DATA / "mammo-sample" / "manifest.csv").is_file():
        pytest.skip("shared/data/mammo-sample is not present next to the repository")
    # Whole cases go to one side each, so no patient is in two parts.
    train_x = np.concatenate([
        load_mammograms("normal", ["0002", "0003"]), load_mammograms("cancer", ["0001", "0002"])
    ])
    val_x = np.concatenate([load_mammograms("normal", ["0005"]), load_mammograms("cancer", ["0003"])])
    test_x = np.concatenate([load_mammograms("normal", ["0006"]), load_mammograms("cancer", ["0004"])])
    train_y = np.array([0] * 8 + [1] * 8)
    val_y = np.array([0] * 4 + [1] * 4)
    test_y = np.array([0] * 4 + [1] * 4)
    epochs_seen: list[dict] = []
    config = EvalConfig(image_size=64, weights="none", alpha=0.35, epochs=2, batch_size=4)

    result = train_and_evaluate(
        train_x, train_y, val_x, val_y, test_x, test_y, config, seed=7, on_epoch=epochs_seen.append
    )

    metrics = result["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert 0.0 <= metrics["roc_auc"] <= 1.0
    assert 0.0 <= metrics["sensitivity"] <= 1.0
    assert 0.0 <= metrics["specificity"] <= 1.0
    assert sum(map(sum, metrics["confusion_matrix"])) == 8
    assert metrics["n"] == 8
    assert len(result["scores"]) == 8
    assert all(0.0 <= score <= 1.0 for score in result["scores"])
    assert result["epochs_run"] == 2
    assert len(result["history"]["loss"]) == 2
    assert len(result["history"]["val_loss"]) == 2
    assert result["history"]["phase"] == ["full", "full"]
    assert result["best_epoch"] in (1, 2)
    assert [epoch["epoch"] for epoch in epochs_seen] == [1, 2]
    assert all(math.isfinite(epoch["val_loss"]) for epoch in epochs_seen)
    assert result["class_weight"] == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert result["counts"]["test"] == 8
    assert result["config"]["image_size"] == 64
    assert result["seconds"] > 0
    assert result["stop_requested"] is False
    print(f"2-epoch 64x64 run on 16 training images took {result['seconds']:.1f} s")


@pytest.mark.slow
def test_stop_request_and_empty_validation() -> None:
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(12, 64, 64), dtype=np.uint8)
    labels = np.array([0, 1] * 6)
    calls = {"count": 0}

    def stop_after_first_check() -> bool:
        calls["count"] += 1
        return True

    config = EvalConfig(
        image_size=64, weights="none", alpha=0.35, epochs=5, batch_size=4, run_eagerly=True
    )

    result = train_and_evaluate(
        images[:8], labels[:8], images[:0], labels[:0], images[8:], labels[8:], config, seed=1,
        stop_requested=stop_after_first_check,
    )

    assert result["stop_requested"] is True
    assert calls["count"] == 1
    assert result["epochs_run"] == 1
    assert result["history"]["val_loss"] == []
    assert result["best_epoch"] is None
    assert result["stopped_early"] is False
    assert result["metrics"]["n"] == 4


@pytest.mark.slow
def test_pretrained_run_warms_head_then_fine_tunes(tmp_path: Path) -> None:
    import keras

    source = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), alpha=0.35, include_top=False, pooling="avg", weights=None
    )
    weights_path = tmp_path / "pretrained.weights.h5"
    source.save_weights(weights_path)
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, size=(20, 64, 64), dtype=np.uint8)
    labels = np.array([0, 1] * 10)
    phases: list[str] = []
    config = EvalConfig(
        image_size=64, weights=str(weights_path), alpha=0.35, epochs=2, warmup_epochs=1,
        batch_size=4, patience=3, run_eagerly=True,
    )

    result = train_and_evaluate(
        images[:12], labels[:12], images[12:16], labels[12:16], images[16:], labels[16:], config,
        seed=2, on_epoch=lambda epoch: phases.append(epoch["phase"]),
    )

    assert phases == ["head", "fine_tune"]
    assert result["history"]["phase"] == ["head", "fine_tune"]
    assert result["epochs_run"] == 2
    assert result["best_epoch"] == int(np.argmin(result["history"]["val_loss"])) + 1
    assert len(result["scores"]) == 4
