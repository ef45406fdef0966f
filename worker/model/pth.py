"""Read PyTorch ``.pth`` checkpoints into NumPy arrays without importing torch.

A ``.pth`` file is a pickle whose tensors refer to raw storages kept beside it: either the
zip layout of ``torch.save`` since 1.6 (``archive/data.pkl`` + ``archive/data/<key>``) or the
legacy stream (magic number, protocol, sys info, the pickle, the storage keys, then each
storage as an int64 element count followed by its bytes). Only the handful of globals a
state dict needs are allowed, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class PthError(ValueError):
    """The file is not a checkpoint this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


class _Storage:
    """A flat typed buffer; filled after the pickle in the legacy layout."""

    def __init__(self, dtype: np.dtype[Any], numel: int) -> None:
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self.data is None:
            raise PthError("tensor storage was never filled")
        return self.data


@dataclass
class _LazyTensor:
    """A tensor whose storage bytes may only arrive after unpickling finishes."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        flat = self.storage.array()
        itemsize = flat.dtype.itemsize
        if not self.shape:
            return flat[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(
    storage: _Storage,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _LazyTensor:
    return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: _LazyTensor, requires_grad: bool, backward_hooks: Any) -> _LazyTensor:
    return data


def _rebuild_parameter_with_state(
    data: _LazyTensor, requires_grad: bool, backward_hooks: Any, state: Any
) -> _LazyTensor:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    **{("torch", name): _StorageType(np.dtype(dt)) for name, dt in _STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], persistent_load: Callable[[Any], Any]) -> None:
        super().__init__(file)
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise PthError(f"refusing to unpickle {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent_load(pid)


def _storage_from_pid(pid: Any, storages: dict[str, _Storage]) -> tuple[_Storage, str]:
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
        raise PthError(f"unsupported persistent id {pid!r}")
    storage_type, key, _location, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
        raise PthError(f"unsupported storage type {storage_type!r}")
    key = str(key)
    if key not in storages:
        storages[key] = _Storage(storage_type.dtype, int(numel))
    return storages[key], key


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise PthError(f"{path}: zip checkpoint without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        byteorder_name = prefix + "byteorder"
        if byteorder_name in names and archive.read(byteorder_name).strip() != b"little":
            raise PthError(f"{path}: big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            storage, key = _storage_from_pid(pid, storages)
            if storage.data is None:
                raw = archive.read(f"{prefix}data/{key}")
                storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
            return storage

        with archive.open(pkl) as f:
            return _Unpickler(io.BytesIO(f.read()), persistent_load).load()


def _load_legacy(path: Path) -> Any:
    with path.open("rb") as f:
        # The header pickles hold only ints and a dict of ints: no globals to restrict.
        if _Unpickler(f, _no_persistent).load() != LEGACY_MAGIC:
            raise PthError(f"{path}: not a torch checkpoint (bad magic number)")
        if _Unpickler(f, _no_persistent).load() != LEGACY_PROTOCOL:
            raise PthError(f"{path}: unsupported legacy protocol")
        sys_info = _Unpickler(f, _no_persistent).load()
        if not sys_info.get("little_endian", True):
            raise PthError(f"{path}: big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}
        result = _Unpickler(f, lambda pid: _storage_from_pid(pid, storages)[0]).load()
        keys = _Unpickler(f, _no_persistent).load()
        for key in keys:
            storage = storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != storage.numel:
                raise PthError(
                    f"{path}: storage {key} holds {numel} elements, expected {storage.numel}"
                )
            nbytes = numel * storage.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise PthError(f"{path}: truncated storage {key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
        return result


def _no_persistent(pid: Any) -> Any:
    raise PthError(f"unexpected persistent id {pid!r}")


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors, by name, as contiguous NumPy arrays in PyTorch layout."""
    path = Path(path)
    loaded = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    if isinstance(loaded, dict) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise PthError(f"{path}: expected a state dict, found {type(loaded).__name__}")
    return dict(_materialise(loaded))
