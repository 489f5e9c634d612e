"""Small Keras architectures around transposed convolutions, for tests and benchmarks.

Each builder returns a Keras model (it imports Keras, which the caller must have installed)
with seeded random non-trivial weights (:func:`randomize`): BatchNormalization moving
statistics away from 0 and 1.  ``width`` scales the channel counts (tests use the default,
the benchmark larger ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ARCHITECTURES", "build", "randomize"]


def randomize(model: Any, seed: int = 0) -> Any:
    """Give every weight of ``model`` seeded random values (in place; returns the model).

    Kernels and biases ``N(0, 0.5 / sqrt(fan_in))``-like (normal, scaled by the kernel's input
    size so that activations stay O(1) through deep models), BN ``gamma`` in [0.5, 1.5],
    ``beta`` N(0, 0.3), moving mean N(0.5, 0.5) and moving variance in [0.5, 2].
    """
    rng = np.random.default_rng(seed)
    for layer in _leaves(model):
        values = []
        for variable, w in zip(layer.weights, layer.get_weights(), strict=True):
            path = str(getattr(variable, "path", getattr(variable, "name", "")))
            if "moving_variance" in path:
                values.append(rng.uniform(0.5, 2.0, w.shape))
            elif "moving_mean" in path:
                values.append(rng.normal(0.5, 0.5, w.shape))
            elif "gamma" in path:
                values.append(rng.uniform(0.5, 1.5, w.shape))
            elif "alpha" in path:
                values.append(rng.uniform(0.05, 0.4, w.shape))
            elif w.ndim >= 2:
                fan_in = (
                    int(np.prod(w.shape[:-1]))
                    if "transpose" not in path
                    else int(np.prod(w.shape[:-2]) * w.shape[-1])
                )
                values.append(rng.normal(0, 1.0 / np.sqrt(max(1, fan_in)), w.shape))
            else:
                values.append(rng.normal(0, 0.3, w.shape))
        if values:
            layer.set_weights(values)
    return model


def _leaves(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_leaves(layer) if hasattr(layer, "layers") else [layer])
    return out


def dcgan(keras: Any, width: int = 8, latent: int = 16) -> Any:
    """DCGAN generator: Dense -> Reshape 4x4 -> (Conv2DTranspose k4 s2, BN, ReLU) x3 -> tanh."""
    L = keras.layers
    z = keras.Input((latent,), name="z")
    x = L.Dense(4 * 4 * 8 * width, use_bias=False, name="project")(z)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="relu0")(x)
    x = L.Reshape((4, 4, 8 * width), name="reshape")(x)
    for i, f in enumerate((4 * width, 2 * width, width)):
        x = L.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False, name=f"up{i}")(x)
        x = L.BatchNormalization(name=f"bn{i + 1}")(x)
        x = L.ReLU(name=f"relu{i + 1}")(x)
    y = L.Conv2D(3, 3, padding="same", activation="tanh", name="rgb")(x)
    return keras.Model(z, y, name="dcgan_generator")


def vae_decoder(keras: Any, width: int = 8, latent: int = 6) -> Any:
    """VAE decoder (Keras' VAE example shape): Dense -> Reshape 7x7 -> Conv2DTranspose s2 x2
    -> Conv2DTranspose sigmoid."""
    L = keras.layers
    z = keras.Input((latent,), name="z")
    x = L.Dense(7 * 7 * 4 * width, activation="relu", name="dense")(z)
    x = L.Reshape((7, 7, 4 * width), name="reshape")(x)
    x = L.Conv2DTranspose(4 * width, 3, strides=2, padding="same", activation="relu", name="up1")(x)
    x = L.Conv2DTranspose(2 * width, 3, strides=2, padding="same", activation="relu", name="up2")(x)
    y = L.Conv2DTranspose(1, 3, padding="same", activation="sigmoid", name="pixels")(x)
    return keras.Model(z, y, name="vae_decoder")


def autoencoder(keras: Any, width: int = 4) -> Any:
    """Convolutional autoencoder: Conv2D + MaxPooling down, Conv2DTranspose + UpSampling up."""
    L = keras.layers
    x0 = keras.Input((16, 16, 1), name="image")
    x = L.Conv2D(2 * width, 3, activation="relu", padding="same", name="enc1")(x0)
    x = L.MaxPooling2D(2, padding="same", name="pool1")(x)
    x = L.Conv2D(width, 3, activation="relu", padding="same", name="enc2")(x)
    x = L.AveragePooling2D(2, padding="same", name="pool2")(x)
    x = L.Conv2DTranspose(width, 3, strides=2, activation="relu", padding="same", name="dec1")(x)
    x = L.UpSampling2D(2, name="up")(x)
    x = L.Conv2DTranspose(2 * width, 3, activation="relu", padding="same", name="dec2")(x)
    y = L.Conv2D(1, 3, activation="sigmoid", padding="same", name="out")(x)
    return keras.Model(x0, y, name="conv_autoencoder")


def unet(keras: Any, width: int = 4, size: int = 32) -> Any:
    """Small U-Net as in Keras' segmentation example: separable convolutions with residual
    ``Add`` on the way down, Conv2DTranspose + UpSampling with residual ``Add`` on the way up,
    ``Concatenate`` skips."""
    L = keras.layers
    inputs = keras.Input((size, size, 3), name="image")
    x = L.Conv2D(width, 3, strides=2, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("relu", name="stem_relu")(x)
    previous = x
    skips = [x]
    for i, f in enumerate((2 * width, 4 * width)):
        x = L.Activation("relu", name=f"down{i}_relu_a")(x)
        x = L.SeparableConv2D(f, 3, padding="same", name=f"down{i}_sep_a")(x)
        x = L.BatchNormalization(name=f"down{i}_bn_a")(x)
        x = L.Activation("relu", name=f"down{i}_relu_b")(x)
        x = L.SeparableConv2D(f, 3, padding="same", name=f"down{i}_sep_b")(x)
        x = L.BatchNormalization(name=f"down{i}_bn_b")(x)
        x = L.MaxPooling2D(3, strides=2, padding="same", name=f"down{i}_pool")(x)
        residual = L.Conv2D(f, 1, strides=2, padding="same", name=f"down{i}_res")(previous)
        x = L.Add(name=f"down{i}_add")([x, residual])
        skips.append(x)
        previous = x
    skips.pop()  # the bottleneck is the up path's input, not a skip
    for i, f in enumerate((4 * width, 2 * width, width)):
        x = L.Activation("relu", name=f"up{i}_relu_a")(x)
        x = L.Conv2DTranspose(f, 3, padding="same", name=f"up{i}_tconv_a")(x)
        x = L.BatchNormalization(name=f"up{i}_bn_a")(x)
        x = L.Activation("relu", name=f"up{i}_relu_b")(x)
        x = L.Conv2DTranspose(f, 3, padding="same", name=f"up{i}_tconv_b")(x)
        x = L.BatchNormalization(name=f"up{i}_bn_b")(x)
        x = L.UpSampling2D(2, name=f"up{i}_upsample")(x)
        residual = L.UpSampling2D(2, name=f"up{i}_res_up")(previous)
        residual = L.Conv2D(f, 1, padding="same", name=f"up{i}_res")(residual)
        x = L.Add(name=f"up{i}_add")([x, residual])
        if skips:
            x = L.Concatenate(name=f"up{i}_skip")([x, skips.pop()])
        previous = x
    outputs = L.Conv2D(3, 3, activation="softmax", padding="same", name="classes")(x)
    return keras.Model(inputs, outputs, name="unet")


def pix2pix(keras: Any, width: int = 4, size: int = 16) -> Any:
    """pix2pix-style generator: Conv2D s2 + LeakyReLU down, Conv2DTranspose s2 + BN + Dropout
    + ReLU up with Concatenate skips; ZeroPadding and Cropping around a valid convolution."""
    L = keras.layers
    inputs = keras.Input((size, size, 3), name="image")
    x = L.ZeroPadding2D(1, name="pad")(inputs)
    x = L.Conv2D(width, 3, padding="valid", name="stem")(x)
    skips = []
    for i, f in enumerate((width, 2 * width, 4 * width)):
        x = L.Conv2D(f, 4, strides=2, padding="same", use_bias=False, name=f"down{i}")(x)
        if i:
            x = L.BatchNormalization(name=f"down{i}_bn")(x)
        x = L.LeakyReLU(0.2, name=f"down{i}_lrelu")(x)
        skips.append(x)
    for i, f in enumerate((2 * width, width)):
        x = L.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False, name=f"up{i}")(x)
        x = L.BatchNormalization(name=f"up{i}_bn")(x)
        x = L.Dropout(0.5, name=f"up{i}_dropout")(x)
        x = L.ReLU(name=f"up{i}_relu")(x)
        x = L.Concatenate(name=f"up{i}_concat")([x, skips[-2 - i]])
    x = L.Conv2DTranspose(3, 4, strides=2, padding="valid", name="last")(x)  # 2s + 2
    x = L.Cropping2D(1, name="crop")(x)
    outputs = L.Activation("tanh", name="tanh")(x)
    return keras.Model(inputs, outputs, name="pix2pix_generator")


def audio_decoder(keras: Any, width: int = 8, steps: int = 16) -> Any:
    """1D audio decoder: Conv1DTranspose upsampling, dilated causal Conv1D residual blocks with
    ELU and Add, Conv1D to one channel."""
    L = keras.layers
    inputs = keras.Input((steps, 2 * width), name="latent")
    x = inputs
    for i, (f, s) in enumerate(((2 * width, 4), (width, 2))):
        x = L.Conv1DTranspose(f, 2 * s, strides=s, padding="same", name=f"up{i}")(x)
        x = L.ELU(name=f"up{i}_elu")(x)
        for d in (1, 3):
            y = L.Conv1D(f, 3, dilation_rate=d, padding="causal", name=f"res{i}_d{d}")(x)
            y = L.ELU(name=f"res{i}_d{d}_elu")(y)
            y = L.Conv1D(f, 1, name=f"res{i}_d{d}_1x1")(y)
            x = L.Add(name=f"res{i}_d{d}_add")([x, y])
    outputs = L.Conv1D(1, 7, padding="same", activation="tanh", name="waveform")(x)
    return keras.Model(inputs, outputs, name="audio_decoder")


def volume_decoder(keras: Any, width: int = 4) -> Any:
    """3D volumetric decoder: Dense -> Reshape 2x2x2 -> Conv3DTranspose s2 -> UpSampling3D ->
    Conv3D."""
    L = keras.layers
    z = keras.Input((8,), name="code")
    x = L.Dense(2 * 2 * 2 * 4 * width, activation="relu", name="dense")(z)
    x = L.Reshape((2, 2, 2, 4 * width), name="reshape")(x)
    x = L.Conv3DTranspose(2 * width, 3, strides=2, padding="same", name="up1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.UpSampling3D(2, name="upsample")(x)
    x = L.Conv3DTranspose(width, 3, padding="same", activation="relu", name="up2")(x)
    outputs = L.Conv3D(1, 3, padding="same", activation="sigmoid", name="occupancy")(x)
    return keras.Model(z, outputs, name="volume_decoder")


ARCHITECTURES: dict[str, Callable[..., Any]] = {
    "dcgan": dcgan,
    "vae_decoder": vae_decoder,
    "autoencoder": autoencoder,
    "unet": unet,
    "pix2pix": pix2pix,
    "audio_decoder": audio_decoder,
    "volume_decoder": volume_decoder,
}


def build(name: str, keras: Any, seed: int = 0, **sizes: Any) -> Any:
    """The architecture ``name`` built with the Keras module ``keras`` (Keras 3 or tf_keras),
    with seeded random weights."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return randomize(ARCHITECTURES[name](keras, **sizes), seed)
