"""Tiny real PNG images, standing in for generated pictures and option previews."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BIT_DEPTH = 8
_COLOUR_TYPE_RGB = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def solid_png(seed: str, size: int = 8) -> bytes:
    """Return a ``size`` x ``size`` RGB PNG filled with a colour derived from ``seed``."""
    colour = hashlib.sha256(seed.encode()).digest()[:3]
    header = struct.pack(">IIBBBBB", size, size, _BIT_DEPTH, _COLOUR_TYPE_RGB, 0, 0, 0)
    row = b"\x00" + colour * size  # filter byte "None", then the pixels
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(row * size)),
            _chunk(b"IEND", b""),
        )
    )


def data_url(png: bytes) -> str:
    """Return ``png`` as a ``data:image/png;base64,...`` URL."""
    return "data:image/png;base64," + base64.b64encode(png).decode()
