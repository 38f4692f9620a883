"""Shards of a workspace's samples: ``Shard(index, count)``, written ``I/N``, numbered from 0.

Shard ``i/N`` holds the samples whose id hashes to ``i`` modulo ``N``, as ranks do in
datatrove and ``torch.distributed`` (``0/4`` to ``3/4``). The hash is the first 8 bytes of the
SHA-256 of the id's UTF-8 bytes, read as a big-endian unsigned integer: the same in Python
(``shard_of``, for collect, which decides before a sample is written) and in DuckDB
(``Shard.sql``, so that a step's selection stays in SQL), on every machine, Python and DuckDB
version. Shards of one ``N`` are disjoint and together hold every sample.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from vlaa_data.errors import SettingsError

__all__ = ["Shard", "shard_of"]

_MAX_COUNT = 1 << 32
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(sample_id: str, count: int) -> int:
    """The shard (0 to ``count - 1``) that ``sample_id`` belongs to."""
    digest = hashlib.sha256(sample_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= _MAX_COUNT:
            raise SettingsError(f"shard {self}: the count must be from 1 to {_MAX_COUNT}")
        if not 0 <= self.index < self.count:
            raise SettingsError(
                f"shard {self}: shards of {self.count} are numbered from 0, "
                f"0/{self.count} to {self.count - 1}/{self.count}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` as a shard; raises ``SettingsError`` with one line saying what is wrong."""
        match = _SPEC.fullmatch(text)
        if match is None:
            raise SettingsError(
                f"shard {text!r}: expected I/N with whole numbers, e.g. 0/4 (the first of four)"
            )
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def contains(self, sample_id: str) -> bool:
        return shard_of(sample_id, self.count) == self.index

    def sql(self, column: str) -> str:
        """A DuckDB condition: the sample id in ``column`` belongs to this shard."""
        if self.count == 1:
            return "true"
        # Both numbers are checked ints (``__post_init__``), so formatting them in is safe.
        return f"(('0x' || left(sha256({column}), 16))::UBIGINT % {self.count} = {self.index})"
