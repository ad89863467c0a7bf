"""Incremental reader of prometheus_client's multiprocess ``*.db`` files.

The format is ``prometheus_client.mmap_dict.MmapedDict``'s: an int32 ``used``
byte count, 4 bytes of padding, then entries of ``int32 key length``, the UTF-8
JSON key space-padded so the next field is 8-byte aligned, ``float64 value``,
``float64 timestamp``. Entries are only ever appended and never move, so once
a file's keys are known a single precompiled ``struct`` unpacks all its values
in C; prometheus_client instead decodes every key on every scrape.

A file can also be deleted and recreated under the same name (a restarted
worker that reuses a pid); each read compares the keys it unpacks with the
ones it knows, and starts over when they differ.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

__all__ = ["CorruptFile", "DbFile", "DbFileName"]

_INT = struct.Struct("i")  # native, as MmapedDict packs it
_HEADER_SIZE = 8


class CorruptFile(Exception):
    """An entry runs past the file's ``used`` mark."""


@dataclass(frozen=True, slots=True)
class DbFileName:
    """What prometheus_client reads from a file name: ``<kind>[_<mode>]_<pid>.db``."""

    kind: str
    mode: str
    pid: str

    @classmethod
    def parse(cls, name: str) -> DbFileName:
        """Split ``name`` the way ``MultiProcessCollector`` does (raises on a malformed gauge)."""
        parts = name.split("_")
        if parts[0] == "gauge":
            if len(parts) < 3:
                raise ValueError(f"gauge file without a mode and pid: {name}")
            return cls("gauge", parts[1], parts[2][:-3])
        return cls(parts[0], "", "")


class DbFile:
    """One ``*.db`` file: the keys read so far and a struct that unpacks their values."""

    __slots__ = ("_format", "_layout", "_used", "keys", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._reset()

    def _reset(self) -> None:
        self.keys: tuple[bytes, ...] = ()
        self._used = _HEADER_SIZE
        self._format = "="  # native order, no implicit alignment: offsets are the file's
        self._layout = struct.Struct(self._format)

    def read(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Return ``(values, timestamps)``, one per key of :attr:`keys`, in file order.

        :attr:`keys` is a new tuple whenever the file gained or changed keys.
        """
        # Read like MmapedDict.read_all_values_from_file: one page, then the rest of `used`.
        with open(self.path, "rb") as f:
            data = f.read(mmap.PAGESIZE)
            if len(data) < _HEADER_SIZE:
                # Created but not yet sized by its writer: nothing in it yet.
                self._reset()
                return (), ()
            used = _INT.unpack_from(data, 0)[0]
            if used > len(data):
                data += f.read(used - len(data))
        if used > len(data):
            raise CorruptFile(f"{self.path}: used={used} past the end of the file")
        used = max(used, _HEADER_SIZE)  # 0 until the writer initialised it
        if used != self._used:
            if used < self._used:  # shrank: a new file under the same name
                self._reset()
            try:
                self._extend(data, used)
            except CorruptFile:  # grew from a boundary that is not one: also a new file
                self._reset()
                self._extend(data, used)
        flat = self._layout.unpack_from(data, _HEADER_SIZE)
        if flat[1::4] != self.keys:
            self._reset()
            self._extend(data, used)
            flat = self._layout.unpack_from(data, _HEADER_SIZE)
        return flat[2::4], flat[3::4]

    def _extend(self, data: bytes, used: int) -> None:
        """Learn the entries between the known end and ``used``."""
        pos = self._used
        keys = list(self.keys)
        parts = [self._format]
        while pos < used:
            if pos + 4 > used:
                raise CorruptFile(f"{self.path}: truncated entry at {pos}")
            length = _INT.unpack_from(data, pos)[0]
            padded = length + (8 - (length + 4) % 8)  # MmapedDict's padding rule
            end = pos + 4 + padded + 16
            if length < 0 or end > used:
                raise CorruptFile(f"{self.path}: entry at {pos} runs past used={used}")
            keys.append(data[pos + 4 : pos + 4 + padded])
            parts.append(f"i{padded}sdd")
            pos = end
        self.keys = tuple(keys)
        self._used = used
        self._format = "".join(parts)
        self._layout = struct.Struct(self._format)
