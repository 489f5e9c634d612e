"""Keras model files in, without TensorFlow: every transposed convolution with its weights.

Two formats, both read with h5py (the ``models`` extra):

- Keras 3 ``.keras``: a zip archive with ``config.json`` (the model's config) and
  ``model.weights.h5``, where a layer's weights are ``<container>/layers/<snake_case class
  name>[_<n>]/vars/0`` (kernel) and ``vars/1`` (bias), and newer Keras writes the layer's name in
  the ``name`` attribute of ``vars``.
- Legacy HDF5 ``.h5`` (Keras 3's ``model.save("x.h5")`` and tf.keras 2.x's): the config in the
  ``model_config`` attribute, the weights under ``model_weights/<top-level layer>/`` at the paths
  listed in its ``weight_names`` attribute (``.../<layer>/kernel`` or ``kernel:0``).

The input shape of a layer (one item, no batch axis) comes from, in order: its
``build_config``, its ``batch_input_shape``/``batch_shape``, the shape Keras 3 records for its
inbound tensor, or the input layer it directly follows.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layers import LAYER_CLASSES, BaseConvTranspose

__all__ = ["load_layers"]

_CONTAINERS = ("Sequential", "Functional", "Model")

_MAX_CONFIG_BYTES = 1 << 28
"""A model config larger than this (256 MiB of JSON) is refused before it is read."""

_DEFLATE_RATIO = 1032
"""Deflate cannot expand data more than about 1032-fold: a zip entry claiming more is damaged."""

_DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    KeyError,
    RuntimeError,
    struct.error,
    UnicodeDecodeError,
    TypeError,
    AttributeError,
    IndexError,
    OverflowError,
    NotImplementedError,
)
"""What zipfile, h5py and the walk over a config raise on damaged files (h5py turns HDF5's
errors into OSError, KeyError, RuntimeError, TypeError or ValueError)."""


@contextlib.contextmanager
def _named(path: str, what: str) -> Iterator[None]:
    """Turn what a damaged file makes zipfile, h5py or NumPy raise into a ``ValueError`` that
    names the file and ``what`` was being read; tconv's own errors (which name it) pass."""
    try:
        yield
    except ValueError as err:
        if str(err).startswith(f"{path}:"):
            raise
        raise ValueError(f"{path}: {what}: {err}") from None
    except _DAMAGE as err:
        raise ValueError(f"{path}: {what} ({type(err).__name__}: {err})") from None


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "reading Keras model files needs h5py: pip install 'tconv[models]'"
        ) from None
    return h5py


@dataclass
class _Found:
    """One transposed convolution found in a model config."""

    entry: dict[str, Any]  # the layer's entry in its container's "layers" list
    chain: tuple[str, ...]  # names of the enclosing models, outermost first (not the root)
    weights_path: str | None  # .keras: the layer's group in model.weights.h5
    input_shape: tuple[int, ...] | None


def _snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _known(shape: Any) -> tuple[int, ...] | None:
    """``[None, 8, 8, 3]`` -> ``(8, 8, 3)``; ``None`` when any item size is unknown."""
    if not isinstance(shape, (list, tuple)) or len(shape) < 2:
        return None
    item = shape[1:]
    return tuple(item) if all(isinstance(v, int) and v >= 0 for v in item) else None


def _batch_shape(entry: dict[str, Any]) -> Any:
    config = entry.get("config") or {}
    return config.get("batch_shape") or config.get("batch_input_shape")


def _inbound(entry: dict[str, Any]) -> tuple[str | None, Any]:
    """The first inbound tensor of a Functional layer entry: (producing layer name, shape)."""
    nodes = entry.get("inbound_nodes") or []
    if not nodes:
        return None, None
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [{"config": {"keras_history": [...]}}]}
        args = node.get("args") or [{}]
        config = args[0].get("config", {}) if isinstance(args[0], dict) else {}
        history = config.get("keras_history") or [None]
        return history[0], config.get("shape")
    if isinstance(node, list) and node and isinstance(node[0], list):  # tf.keras: [[name, ...]]
        return node[0][0], None
    return None, None


def _walk(
    model: dict[str, Any], chain: tuple[str, ...], weights_path: str | None
) -> Iterator[_Found]:
    """Every transposed convolution in a model config, nested models included.

    ``weights_path`` is the model's group in a ``.keras`` weights file (``None`` for ``.h5``).
    """
    config = model.get("config") or {}
    layers = config.get("layers") or []
    inputs = {
        (e.get("config") or {}).get("name"): _known(_batch_shape(e))
        for e in layers
        if e.get("class_name") == "InputLayer"
    }
    sequential = model.get("class_name") == "Sequential"
    used: dict[str, int] = {}
    previous_shape = _known(config.get("build_input_shape")) if sequential else None
    for entry in layers:
        class_name = entry.get("class_name")
        name = (entry.get("config") or {}).get("name")
        if class_name == "InputLayer":
            previous_shape = _known(_batch_shape(entry))
            if sequential:
                continue  # a Sequential's InputLayer holds no weights group
        snake = _snake_case(str(class_name))
        count = used.get(snake)
        used[snake] = 0 if count is None else count + 1
        group = None
        if weights_path is not None:
            group = f"{weights_path}/layers/{snake if count is None else f'{snake}_{count + 1}'}"
        if class_name in LAYER_CLASSES:
            build = entry.get("build_config") or {}
            source, tensor_shape = _inbound(entry)
            shape = (
                _known(build.get("input_shape"))
                or _known(_batch_shape(entry))
                or _known(tensor_shape)
                or (inputs.get(source) if source else None)
                or (previous_shape if sequential else None)
            )
            yield _Found(entry, chain, group, shape)
        elif class_name in _CONTAINERS or "layers" in (entry.get("config") or {}):
            yield from _walk(entry, (*chain, str(name)), group)
        previous_shape = None


def _make_layer(found: _Found, weights: list[np.ndarray], path: str) -> BaseConvTranspose:
    entry = found.entry
    try:
        layer = LAYER_CLASSES[entry["class_name"]].from_config(entry["config"])
        layer.set_weights(weights)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        name = (entry.get("config") or {}).get("name")
        raise ValueError(f"{path}: layer {name!r} cannot be loaded: {err}") from err
    if found.input_shape is not None:
        layer.input_shape = found.input_shape
    return layer


def _key(layers: dict[str, Any], item: _Found) -> str:
    """The layer's name, or ``"model/.../name"`` when another nested model used it already."""
    name = str(item.entry["config"]["name"])
    return name if name not in layers else "/".join((*item.chain, name))


def _summary(model: dict[str, Any]) -> str:
    """``"InputLayer 'x', Dense 'd', ..."`` for error messages."""
    names = []
    for entry in (model.get("config") or {}).get("layers") or []:
        names.append(f"{entry.get('class_name')} {(entry.get('config') or {}).get('name')!r}")
    return ", ".join(names) or "no layers"


def _member(archive: zipfile.ZipFile, name: str, path: str, size: int) -> bytes:
    """The bytes of archive member ``name``, after checking the sizes its entry claims against
    the archive's ``size`` (so that no claim drives an allocation)."""
    info = archive.getinfo(name)
    limit = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_RATIO)
    if info.compress_size > size or info.file_size > limit + 64:
        raise ValueError(
            f"{path}: a damaged .keras archive: {name} claims {info.file_size} bytes "
            f"({info.compress_size} compressed) in a {size}-byte file"
        )
    if name == "config.json" and info.file_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: config.json is {info.file_size} bytes; too large for a config")
    with _named(path, f"a damaged .keras archive: {name} cannot be read"):
        return archive.read(name)


def _load_keras_archive(path: str) -> dict[str, BaseConvTranspose]:
    h5py = _h5py()
    size = os.path.getsize(path)
    with _named(path, "not a readable Keras 3 .keras archive"):
        archive = zipfile.ZipFile(path)
    with archive:
        names = archive.namelist()
        if "config.json" not in names or "model.weights.h5" not in names:
            raise ValueError(
                f"{path}: not a Keras 3 .keras archive: expected config.json and "
                f"model.weights.h5, found {names}"
            )
        try:
            model = json.loads(_member(archive, "config.json", path, size))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: config.json is not valid JSON: {err}") from None
        with _named(path, "config.json is not a Keras model config"):
            found = list(_walk(_mapping(model, path), (), ""))
        _require(found, model, path)
        data = _member(archive, "model.weights.h5", path, size)
        check_hdf5_heaps(data, path)
        with _named(path, "model.weights.h5 is not a readable HDF5 file"):
            weights_file = h5py.File(io.BytesIO(data), "r")
        with weights_file as weights, _named(path, "model.weights.h5 is damaged"):
            layers: dict[str, BaseConvTranspose] = {}
            for item in found:
                layers[_key(layers, item)] = _make_layer(
                    item, _archive_weights(weights, item, path, len(data)), path
                )
    return layers


def _mapping(model: Any, path: str) -> dict[str, Any]:
    if not isinstance(model, dict):
        raise ValueError(
            f"{path}: the model config is a JSON {type(model).__name__}, not an object"
        )
    return model


def _array(dataset: Any, path: str, file_size: int) -> np.ndarray:
    """A weight dataset's values, after checking that the size it claims fits in the file (an
    uncompressed dataset) or in what its filters could have expanded."""
    shape = getattr(dataset, "shape", None)
    if shape is None:  # not a dataset (a group where a weight should be)
        raise ValueError(f"{path}: {getattr(dataset, 'name', '?')} is not a weight array")
    claimed = int(np.prod(shape, dtype=np.float64)) * dataset.dtype.itemsize
    limit = file_size * (_DEFLATE_RATIO if dataset.compression else 1)
    if claimed > limit:
        raise ValueError(
            f"{path}: weight {dataset.name} claims shape {shape} ({claimed} bytes) in a "
            f"{file_size}-byte file: the file is damaged"
        )
    return np.asarray(dataset)


def check_hdf5_heaps(data: bytes | mmap.mmap, path: str) -> None:
    """Refuse an HDF5 file whose global heap collections (where variable-length strings such as
    a model config live) are inconsistent: libhdf5 loops forever on some (a zeroed object header
    inside a collection), so they are checked before it reads them.

    A collection is ``GCOL``, version 1, 3 reserved bytes, its size (8 bytes), then objects:
    index (2), reference count (2), reserved (4), size (8), the data padded to 8 bytes; object 0
    is the free space up to the collection's end.
    """
    start = data.find(b"GCOL")
    while start >= 0:
        if data[start + 4 : start + 8] == b"\x01\0\0\0" and len(data) >= start + 16:
            (size,) = struct.unpack_from("<Q", data, start + 8)
            end = start + size
            at = start + 16
            while size and end <= len(data) and at + 16 <= end:
                index, _, _, length = struct.unpack_from("<HHIQ", data, at)
                if index == 0:
                    at = end if at + length == end else -1
                    break
                at += 16 + -(-length // 8) * 8
            if size and end <= len(data) and at not in range(end - 15, end + 1):
                raise ValueError(
                    f"{path}: a damaged HDF5 file: the global heap collection at byte {start} "
                    "is inconsistent (its objects do not add up to its size)"
                )
        start = data.find(b"GCOL", start + 4)


def _archive_weights(weights: Any, item: _Found, path: str, size: int) -> list[np.ndarray]:
    name = item.entry["config"]["name"]
    group_path = (item.weights_path or "").lstrip("/")
    group = weights.get(group_path)
    if group is None or "vars" not in group:
        # Layers saved by another Keras version may be numbered differently: use the names.
        group = _group_by_name(weights, group_path.rsplit("/", 1)[0], name)
    elif group["vars"].attrs.get("name", name) != name:
        group = _group_by_name(weights, group_path.rsplit("/", 1)[0], name)
    if group is None:
        raise ValueError(
            f"{path}: the config names layer {name!r} but model.weights.h5 has no weights for "
            f"it (looked for {item.weights_path}/vars)"
        )
    variables = group["vars"]
    return [_array(variables[key], path, size) for key in sorted(variables, key=int)]


def _group_by_name(weights: Any, parent: str, name: str) -> Any:
    container = weights.get(parent) if parent else weights
    for child in (container or {}).values():
        if "vars" in child and child["vars"].attrs.get("name") == name:
            return child
    return None


def _load_legacy_h5(path: str, h5py: Any) -> dict[str, BaseConvTranspose]:
    size = os.path.getsize(path)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        check_hdf5_heaps(data, path)
    with _named(path, "a damaged HDF5 file"), h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
        if raw is None:
            what = ", ".join(f.keys()) or "nothing"
            raise ValueError(
                f"{path}: an HDF5 file without a model config (weights only?); found {what}. "
                "Save the whole model with model.save()"
            )
        try:
            model = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: model_config is not valid JSON: {err}") from None
        found = list(_walk(_mapping(model, path), (), None))
        _require(found, model, path)
        root = f.get("model_weights", f)
        layers: dict[str, BaseConvTranspose] = {}
        for item in found:
            name = item.entry["config"]["name"]
            top = item.chain[0] if item.chain else name
            layers[_key(layers, item)] = _make_layer(
                item, _legacy_weights(root, top, name, path, size), path
            )
    return layers


def _legacy_weights(root: Any, top: str, name: str, path: str, size: int) -> list[np.ndarray]:
    group = root.get(top)
    if group is None:
        raise ValueError(
            f"{path}: the config names layer {name!r} but the file has no weights for it"
        )
    by_role: dict[str, np.ndarray] = {}
    for weight_name in group.attrs.get("weight_names", []):
        weight_name = weight_name.decode() if isinstance(weight_name, bytes) else str(weight_name)
        parts = weight_name.split("/")
        if len(parts) >= 2 and parts[-2] == name:
            by_role[parts[-1].split(":")[0]] = _array(group[weight_name], path, size)
    if "kernel" not in by_role:
        raise ValueError(
            f"{path}: the config names layer {name!r} but the file has no weights for it"
        )
    return [by_role["kernel"]] + ([by_role["bias"]] if "bias" in by_role else [])


def _require(found: list[_Found], model: dict[str, Any], path: str) -> None:
    if not found:
        raise ValueError(
            f"{path}: no Conv1DTranspose, Conv2DTranspose or Conv3DTranspose layer in model "
            f"{(model.get('config') or {}).get('name')!r} ({model.get('class_name')}); "
            f"found {_summary(model)}"
        )


def load_layers(path: str | os.PathLike[str]) -> dict[str, BaseConvTranspose]:
    """Every Keras transposed convolution in a ``.keras`` or ``.h5`` model file: ``{name: layer}``.

    The key is the layer's name (``"model/name"`` for a nested model's layer whose name an earlier
    layer already took).  Layers come with their config and weights, and with
    ``layer.input_shape`` (one item, no batch axis) where the file records it.  Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for anything that
    is not a Keras model with a transposed convolution.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a .keras or .h5 model file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        return _load_keras_archive(path)
    h5py = _h5py()
    if h5py.is_hdf5(path):
        return _load_legacy_h5(path, h5py)
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        raise ValueError(
            f"{path}: a damaged .keras (zip) archive: the zip directory is missing "
            "(a truncated or partly copied file?)"
        )
    raise ValueError(
        f"{path}: not a Keras model file (a .keras zip archive or an HDF5 .h5 model); "
        f"the file starts with {head!r}"
    )
