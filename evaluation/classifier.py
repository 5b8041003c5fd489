"""MobileNetV2 transfer learning that scores a training set by test-set metrics.

The catalog hands over uint8 grayscale arrays and labels (1 = cancer, or
1 = synthetic in the realism check) and gets back metrics, per-epoch history
and test scores. TensorFlow is imported only inside the functions that need
it, so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import binary_metrics

# Input sizes and width multipliers for which Keras publishes ImageNet weights.
# For any other size Keras loads the 224 px weights, which fit every input size
# because the base is fully convolutional.
IMAGENET_SIZES = (96, 128, 160, 192, 224)
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
)
BASE_LAYER_NAME = "mobilenet_v2_base"
MIN_IMAGE_SIZE = 32
RESIZE_BATCH = 64


class WeightsUnavailableError(RuntimeError):
    """Pretrained MobileNetV2 weights that could not be downloaded, found or loaded."""


@dataclasses.dataclass
class EvalConfig:
    """Settings of one classifier training run.

    With pretrained weights and `fine_tune` on (the default), the base is
    frozen for `warmup_epochs` while the new head learns at `learning_rate`,
    then unfrozen and trained with the much smaller `fine_tune_learning_rate`
    for the remaining epochs. Training the head alone on a frozen base underfits
    mammograms, which look nothing like ImageNet photographs, while unfreezing
    at once lets the random head's large gradients damage the pretrained
    filters. With `weights='none'` there is nothing to transfer, so the whole
    network trains from the first epoch at `learning_rate` and `fine_tune` has
    no effect. `epochs` counts both phases together.

    `run_eagerly` skips TensorFlow's graph tracing, which costs 15-40 s per
    compiled phase on a 2-core CPU but makes each step several times slower.
    It only pays off for runs of a few dozen steps, such as tests.
    """

    image_size: int = 128
    weights: str = "imagenet"
    alpha: float = 1.0
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune: bool = True
    warmup_epochs: int = 3
    fine_tune_learning_rate: float = 1e-5
    dropout: float = 0.2
    patience: int = 5
    class_weight: str | None = "balanced"
    run_eagerly: bool = False

    def __post_init__(self) -> None:
        if self.weights is None:
            self.weights = "none"

        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size must be at least {MIN_IMAGE_SIZE} px for MobileNetV2, "
                f"got {self.image_size}"
            )
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        if self.weights == "imagenet" and self.alpha not in IMAGENET_ALPHAS:
            raise ValueError(
                f"ImageNet weights exist only for alpha in {IMAGENET_ALPHAS}, got {self.alpha}"
            )
        if self.weights not in ("imagenet", "none") and not self.weights.endswith((".h5", ".hdf5")):
            raise ValueError(
                "weights must be 'imagenet', 'none' or the path of a .h5 or .weights.h5 file, "
                f"got {self.weights!r}"
            )

        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must not be negative, got {self.warmup_epochs}")
        if self.learning_rate <= 0 or self.fine_tune_learning_rate <= 0:
            raise ValueError(
                "learning rates must be positive, got "
                f"{self.learning_rate} and {self.fine_tune_learning_rate}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.patience < 0:
            raise ValueError(f"patience must not be negative, got {self.patience}")

        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")

    @property
    def pretrained(self) -> bool:
        """Whether the base starts from stored weights rather than random ones."""
        return self.weights != "none"

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict that JSON can store."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvalConfig:
        """Build a config from `to_dict` output; missing keys take their defaults."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown EvalConfig fields: {', '.join(unknown)}")
        return cls(**dict(values))


@dataclasses.dataclass(frozen=True)
class _Phase:
    """One `fit` call: how many epochs, at which learning rate, base frozen or not."""

    name: str
    epochs: int
    learning_rate: float
    base_trainable: bool


def preprocess(images: np.ndarray, image_size: int | None = None) -> np.ndarray:
    """Turn uint8 grayscale images into MobileNetV2 input.

    Accepts (N, H, W) or (N, H, W, 1) uint8 arrays. Images whose size differs
    from `image_size` are resized to that square with bilinear antialiased
    interpolation, so the aspect ratio is not kept. `None` keeps the given
    size. Returns a new float32 array of shape (N, size, size, 3) scaled to
    [-1, 1] as x / 127.5 - 1, with the gray channel repeated three times.
    The caller's array is never modified.
    """
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {array.dtype}")
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W) or (N, H, W, 1), got {array.shape}")

    pixels = array.astype(np.float32)
    height, width = pixels.shape[1:]
    if image_size is not None and (height, width) != (image_size, image_size):
        pixels = _resize(pixels, image_size)

    scaled = np.clip(pixels / np.float32(127.5) - np.float32(1.0), -1.0, 1.0)
    return np.repeat(scaled[..., np.newaxis], 3, axis=-1)


def balanced_class_weight(labels: np.ndarray) -> dict[int, float]:
    """Weight each class by n / (2 * n_class), so both classes count equally in the loss."""
    labels = np.asarray(labels)
    counts = np.bincount(labels.astype(np.int64), minlength=2)
    if np.any(counts == 0):
        raise ValueError(f"both classes are needed for class weights, got counts {counts.tolist()}")
    return {label: float(labels.size / (2.0 * counts[label])) for label in (0, 1)}


def imagenet_weights_file(alpha: float, image_size: int) -> str:
    """Return the local path of Keras' ImageNet MobileNetV2 weights, downloading them if needed.

    Keras keeps the file in ~/.keras/models/ (or $KERAS_HOME/models/), so a
    copy placed there by hand is used without any network access.
    """
    keras = _import_keras()
    rows = image_size if image_size in IMAGENET_SIZES else 224
    file_name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"
    # Keras 3.15 re-raises URLError and HTTPError from the download as a bare
    # Exception, so nothing narrower catches an offline machine.
    # NOTE: a network that drops packets instead of refusing them can make the
    # download hang, because Keras sets no timeout on it.
    try:
        return keras.utils.get_file(
            file_name, IMAGENET_WEIGHTS_URL + file_name, cache_subdir="models"
        )
    except Exception as error:
        reason = " ".join(str(error).split())
        raise WeightsUnavailableError(
            f"could not download ImageNet weights for MobileNetV2 ({reason}); "
            f"pass weights=PATH to a local copy of {file_name} (or put it in ~/.keras/models/), "
            "or weights='none' to train from random initialisation"
        ) from None


def build_classifier(config: EvalConfig, num_classes: int = 2) -> Any:
    """Build MobileNetV2 without its top, plus dropout and a new output layer.

    Two classes get one sigmoid unit (the probability of label 1), more
    classes a softmax layer. Raises WeightsUnavailableError when the weights
    cannot be downloaded, when a weights file does not exist, or when it does
    not fit this alpha. A weights file contains the base's weights only, as
    Keras' `*_no_top.h5` files or `base.save_weights('x.weights.h5')` store them.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    keras = _import_keras()
    input_shape = (config.image_size, config.image_size, 3)

    weights_path: str | None = None
    if config.weights == "imagenet":
        weights_path = imagenet_weights_file(config.alpha, config.image_size)
    elif config.weights != "none":
        local = Path(config.weights).expanduser()
        if not local.is_file():
            raise WeightsUnavailableError(
                f"weights file not found: {local}; pass an existing MobileNetV2 .h5 or "
                ".weights.h5 file, 'imagenet', or 'none' to train from random initialisation"
            )
        weights_path = str(local)

    base = keras.applications.MobileNetV2(
        input_shape=input_shape,
        alpha=config.alpha,
        include_top=False,
        pooling="avg",
        weights=None,
        name=BASE_LAYER_NAME,
    )
    if weights_path is not None:
        _load_base_weights(base, weights_path, config.alpha)

    inputs = keras.Input(shape=input_shape, name="image")
    # Pretrained batch-norm statistics stay fixed (inference mode) even after
    # the base is unfrozen, because small batches of mammograms would replace
    # them with noisy estimates. A random base has no statistics worth keeping.
    if config.pretrained:
        features = base(inputs, training=False)
    else:
        features = base(inputs)
    features = keras.layers.Dropout(config.dropout, name="dropout")(features)
    if num_classes == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(features)
    else:
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="probability")(features)
    return keras.Model(inputs, outputs, name="mobilenet_v2_classifier")


def train_and_evaluate(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    config: EvalConfig,
    seed: int,
    on_epoch: Callable[[dict], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> dict:
    """Train a binary MobileNetV2 classifier and report its metrics on the test images.

    Images are uint8 grayscale arrays as `preprocess` takes them, labels are
    0/1. Early stopping watches the validation loss and restores the weights
    of the best epoch. With an empty validation set there is no early
    stopping and the weights after the last epoch are kept.

    `on_epoch` receives a dict per epoch (epoch, epochs, phase, loss,
    accuracy, val_loss, val_accuracy; the last two None without validation).
    When `stop_requested` returns True, training stops after the current
    batch, the test set is still scored and the result has
    `stop_requested: True`. KeyboardInterrupt is not caught.

    Returns metrics (see `binary_metrics`), history (per-epoch lists of loss,
    accuracy, val_loss, val_accuracy and phase), epochs_run, best_epoch,
    seconds, scores (test probabilities of label 1), config, seed, class_weight,
    counts, stopped_early and stop_requested.
    """
    train_labels = _binary_labels(train_y, len(train_x), "train")
    val_labels = _binary_labels(val_y, len(val_x), "validation")
    test_labels = _binary_labels(test_y, len(test_x), "test")
    if len(test_labels) == 0:
        raise ValueError("the test set is empty, so there is nothing to evaluate")
    train_counts = np.bincount(train_labels, minlength=2)
    if np.any(train_counts == 0):
        raise ValueError(
            f"training needs both labels, got {train_counts[0]} of label 0 "
            f"and {train_counts[1]} of label 1"
        )

    keras = _import_keras()
    started = time.perf_counter()
    # Models of earlier runs in this process would otherwise stay in memory.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)

    # NOTE: every image is held in memory as float32 at once, 12 bytes per
    # pixel after channel replication: 10,000 images at 128 px take about 2 GB.
    train_images = preprocess(train_x, config.image_size)
    test_images = preprocess(test_x, config.image_size)
    validation = None
    if len(val_labels) > 0:
        validation = (preprocess(val_x, config.image_size), val_labels.astype(np.float32))
    class_weight = balanced_class_weight(train_labels) if config.class_weight == "balanced" else None

    model = build_classifier(config)
    base = model.get_layer(BASE_LAYER_NAME)
    history: dict[str, list] = {
        "loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [], "phase": [],
    }
    stop_state = {"requested": False}
    stopped_early = False
    best_val_loss = float("inf")
    best_weights: list | None = None

    for phase in _plan_phases(config):
        if stop_state["requested"]:
            break
        base.trainable = phase.base_trainable
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=phase.learning_rate),
            loss="binary_crossentropy",
            metrics=["accuracy"],
            run_eagerly=config.run_eagerly,
        )
        callbacks = [
            _epoch_recorder(keras, history, phase.name, config.epochs, on_epoch),
            _stop_checker(keras, stop_requested, stop_state),
        ]
        early_stopping = None
        if validation is not None:
            early_stopping = keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, restore_best_weights=True
            )
            callbacks.append(early_stopping)

        epochs_before = len(history["loss"])
        model.fit(
            train_images,
            train_labels.astype(np.float32),
            batch_size=config.batch_size,
            epochs=phase.epochs,
            validation_data=validation,
            class_weight=class_weight,
            callbacks=callbacks,
            shuffle=True,
            verbose=0,
        )

        if early_stopping is not None:
            stopped_early = stopped_early or early_stopping.stopped_epoch > 0
            # EarlyStopping restores the best epoch of this phase only, so the
            # best weights of an earlier phase win back here when they were better.
            phase_losses = history["val_loss"][epochs_before:]
            phase_best = min(phase_losses) if phase_losses else float("inf")
            if phase_best < best_val_loss:
                best_val_loss = phase_best
                best_weights = model.get_weights()
            elif best_weights is not None:
                model.set_weights(best_weights)

    scores = model.predict(test_images, batch_size=config.batch_size, verbose=0).ravel()
    metrics = binary_metrics(test_labels, scores)
    seconds = time.perf_counter() - started

    best_epoch = None
    if history["val_loss"]:
        best_epoch = int(np.argmin(history["val_loss"])) + 1
    return {
        "metrics": metrics,
        "history": history,
        "epochs_run": len(history["loss"]),
        "best_epoch": best_epoch,
        "seconds": seconds,
        "scores": [float(score) for score in scores],
        "config": config.to_dict(),
        "seed": int(seed),
        "class_weight": class_weight,
        "counts": {
            "train": int(len(train_labels)),
            "train_positive": int(train_counts[1]),
            "validation": int(len(val_labels)),
            "test": int(len(test_labels)),
            "test_positive": int(test_labels.sum()),
        },
        "stopped_early": stopped_early,
        "stop_requested": stop_state["requested"],
    }


def package_versions() -> dict[str, str]:
    """Return the TensorFlow, Keras and numpy versions, for recording with results."""
    keras = _import_keras()
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def _plan_phases(config: EvalConfig) -> list[_Phase]:
    """Split the epochs into a frozen-base warm-up and a fine-tuning phase, as configured."""
    if not config.pretrained:
        return [_Phase("full", config.epochs, config.learning_rate, base_trainable=True)]
    if not config.fine_tune:
        return [_Phase("head", config.epochs, config.learning_rate, base_trainable=False)]

    warmup = min(config.warmup_epochs, config.epochs)
    phases = []
    if warmup > 0:
        phases.append(_Phase("head", warmup, config.learning_rate, base_trainable=False))
    if config.epochs > warmup:
        phases.append(
            _Phase("fine_tune", config.epochs - warmup, config.fine_tune_learning_rate, True)
        )
    return phases


def _epoch_recorder(
    keras: Any,
    history: dict[str, list],
    phase: str,
    planned_epochs: int,
    on_epoch: Callable[[dict], None] | None,
) -> Any:
    """Make a callback that appends each epoch's logs to `history` and reports them."""

    def record(epoch: int, logs: dict | None) -> None:
        logs = logs or {}
        row = {
            "loss": float(logs["loss"]),
            "accuracy": float(logs["accuracy"]),
            "val_loss": float(logs["val_loss"]) if "val_loss" in logs else None,
            "val_accuracy": float(logs["val_accuracy"]) if "val_accuracy" in logs else None,
        }
        history["loss"].append(row["loss"])
        history["accuracy"].append(row["accuracy"])
        if row["val_loss"] is not None:
            history["val_loss"].append(row["val_loss"])
            history["val_accuracy"].append(row["val_accuracy"])
        history["phase"].append(phase)
        if on_epoch is not None:
            on_epoch({"epoch": len(history["loss"]), "epochs": planned_epochs, "phase": phase, **row})

    return keras.callbacks.LambdaCallback(on_epoch_end=record)


def _stop_checker(
    keras: Any, stop_requested: Callable[[], bool] | None, stop_state: dict[str, bool]
) -> Any:
    """Make a callback that ends training after the batch during which a stop was requested."""

    class StopOnRequest(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if stop_requested is not None and stop_requested():
                stop_state["requested"] = True
                self.model.stop_training = True

    return StopOnRequest()


def _load_base_weights(base: Any, weights_path: str, alpha: float) -> None:
    """Load stored weights into the MobileNetV2 base, raising WeightsUnavailableError on mismatch.

    Keras warns once per skipped layer before it raises on a mismatched file.
    Those warnings are dropped when loading fails and passed on when it succeeds.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base.load_weights(weights_path)
        except (ValueError, OSError, KeyError) as error:
            text = str(error).strip()
            first_line = text.splitlines()[0] if text else type(error).__name__
            raise WeightsUnavailableError(
                f"could not load MobileNetV2 weights (alpha {alpha}) from {weights_path}: {first_line}"
            ) from error
    for warning in caught:
        warnings.warn(warning.message, warning.category, stacklevel=3)


def _binary_labels(labels: Any, image_count: int, part: str) -> np.ndarray:
    """Return labels as an int64 array after checking they are 0/1 and match the image count."""
    array = np.asarray(labels).ravel()
    if array.size != image_count:
        raise ValueError(f"{part} set has {image_count} images but {array.size} labels")
    if array.size and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{part} labels must be 0 or 1, found {sorted(set(array.tolist()))}")
    return array.astype(np.int64)


def _resize(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """Resize a float32 (N, H, W) stack to (N, image_size, image_size), a batch at a time."""
    tf = _import_tensorflow()
    resized = np.empty((pixels.shape[0], image_size, image_size), dtype=np.float32)
    for start in range(0, pixels.shape[0], RESIZE_BATCH):
        batch = pixels[start : start + RESIZE_BATCH, :, :, np.newaxis]
        output = tf.image.resize(batch, (image_size, image_size), method="bilinear", antialias=True)
        resized[start : start + RESIZE_BATCH] = output.numpy()[..., 0]
    return resized


def _import_keras() -> Any:
    """Import Keras with TensorFlow's C++ logging turned down to warnings and errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def _import_tensorflow() -> Any:
    """Import TensorFlow with its C++ logging turned down to warnings and errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf
