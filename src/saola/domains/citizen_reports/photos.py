"""Photos of citizen reports: checked by content with Pillow, turned upright, and re-encoded without metadata.

Re-encoding drops every EXIF tag (the GPS position first of all, but also the camera's serial number and the
owner's name some phones write) and any XMP or comment block, so what is stored cannot point back at the
reporter. The orientation tag is applied to the pixels first, so the photo still shows the right way up.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from saola.core.errors import DomainError, FieldError

MAX_PIXELS = 40_000_000
"""Largest decoded image (a 40-megapixel photo); bigger ones are refused before decoding (decompression bombs)."""

MAX_SIDE = 2560
"""Longest side kept: larger photos are scaled down, which is plenty to see a pothole."""

FORMATS = {"JPEG": ("image/jpeg", ".jpg"), "PNG": ("image/png", ".png")}
GPS_IFD = 0x8825


@dataclass(frozen=True)
class CleanPhoto:
    """A photo ready to store: its bytes without metadata, type, size in pixels and what was removed."""

    data: bytes
    mime: str
    extension: str
    width: int
    height: int
    original_bytes: int
    had_location: bool


class PhotoRejected(DomainError):
    """The file is not a JPEG or PNG photo, or cannot be read."""

    def __init__(self, message: str, loc: list[str | int]) -> None:
        super().__init__(message, 415, "photo_type", [FieldError(loc, message)])


class PhotoTooLarge(DomainError):
    """The file is over the configured size."""

    def __init__(self, limit: int, loc: list[str | int]) -> None:
        super().__init__(f"the photo is larger than {limit} bytes", 413, "photo_too_large",
                         [FieldError(loc, f"at most {limit} bytes")])


def clean_photo(raw: bytes, *, max_bytes: int, loc: list[str | int]) -> CleanPhoto:
    """Check a JPEG or PNG photo and return it re-encoded without EXIF (GPS included), XMP or comments."""
    if len(raw) > max_bytes:
        raise PhotoTooLarge(max_bytes, loc)
    if not raw:
        raise PhotoRejected("the photo is empty", loc)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            if image.format not in FORMATS:
                raise PhotoRejected(f"a photo must be JPEG or PNG, not {image.format or 'unknown'}", loc)
            if image.width * image.height > MAX_PIXELS:
                raise PhotoRejected(f"the photo has more than {MAX_PIXELS} pixels", loc)
            exif = image.getexif()
            had_location = bool(exif.get_ifd(GPS_IFD)) or GPS_IFD in exif
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
            SyntaxError, ValueError) as exc:
        raise PhotoRejected(f"the file is not a readable JPEG or PNG photo ({type(exc).__name__})", loc) from None
    fmt = image.format
    upright = ImageOps.exif_transpose(image)
    upright.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    if fmt == "JPEG":
        if upright.mode not in ("RGB", "L"):
            upright = upright.convert("RGB")
        # No exif=, no icc_profile=, no comment=: Pillow writes none of them unless asked.
        upright.save(out, format="JPEG", quality=88, optimize=True)
    else:
        if upright.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            upright = upright.convert("RGBA")
        upright.save(out, format="PNG", optimize=True)
    mime, extension = FORMATS[fmt]
    return CleanPhoto(data=out.getvalue(), mime=mime, extension=extension, width=upright.width,
                      height=upright.height, original_bytes=len(raw), had_location=had_location)
