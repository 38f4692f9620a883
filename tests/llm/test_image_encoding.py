from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from vlaa_data.llm.image_encoding import ImageEncoder, encode_data_url
from vlaa_data.llm.reply import CallFailed
from vlaa_data.llm.request import ImagePart


def write_image(path: Path, size=(40, 30), mode="RGB", image_format="PNG", **save) -> ImagePart:
    color = (10, 200, 30, 128)[: len(mode)] if mode in ("RGB", "RGBA") else 7
    Image.new(mode, size, color).save(path, format=image_format, **save)
    return ImagePart(sha=path.stem, path=path, width=size[0], height=size[1])


def decode(url: str) -> tuple[str, bytes, Image.Image]:
    header, payload = url.split(",", 1)
    assert header.startswith("data:") and header.endswith(";base64")
    data = base64.b64decode(payload)
    return header[5:-7], data, Image.open(io.BytesIO(data))


@pytest.mark.parametrize(
    ("image_format", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_images_within_the_cap_are_sent_unchanged(tmp_path, image_format, mime):
    part = write_image(tmp_path / "a.img", image_format=image_format)
    for cap in (None, 40 * 30):
        got_mime, data, _ = decode(encode_data_url(part, cap))
        assert got_mime == mime
        assert data == part.path.read_bytes()


def test_large_jpeg_is_downscaled_keeping_aspect_ratio(tmp_path):
    part = write_image(tmp_path / "a.jpg", size=(1600, 900), image_format="JPEG")
    mime, _, image = decode(encode_data_url(part, 160 * 90))
    assert mime == "image/jpeg"
    assert image.size == (160, 90)


def test_rgba_png_stays_png_with_alpha(tmp_path):
    part = write_image(tmp_path / "a.png", size=(300, 200), mode="RGBA")
    mime, _, image = decode(encode_data_url(part, 3000))
    assert mime == "image/png"
    assert image.mode == "RGBA"
    assert image.width * image.height <= 3000
    assert abs(image.width / image.height - 1.5) < 0.05


def test_palette_image_is_reencoded_as_png(tmp_path):
    part = write_image(tmp_path / "a.gif", size=(200, 200), mode="P", image_format="GIF")
    mime, _, image = decode(encode_data_url(part, 100 * 100))
    assert mime == "image/png"
    assert image.size == (100, 100)


def test_other_formats_are_reencoded_even_within_the_cap(tmp_path):
    part = write_image(tmp_path / "a.bmp", image_format="BMP")
    mime, _, image = decode(encode_data_url(part, None))
    assert mime == "image/jpeg"
    assert image.size == (40, 30)


def test_exif_rotation_is_applied_when_reencoding(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    part = write_image(tmp_path / "a.jpg", size=(400, 100), image_format="JPEG", exif=exif)
    _, _, image = decode(encode_data_url(part, 40 * 10))
    assert image.size == (10, 40)


def test_missing_and_corrupt_files_are_image_unreadable(tmp_path):
    missing = ImagePart("x", tmp_path / "missing.png", 1, 1)
    with pytest.raises(CallFailed) as caught:
        encode_data_url(missing, None)
    assert caught.value.reason == "image_unreadable"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image at all")
    with pytest.raises(CallFailed) as caught:
        encode_data_url(ImagePart("y", corrupt, 1, 1), None)
    assert caught.value.reason == "image_unreadable"
    assert "corrupt.png" in caught.value.detail


def test_encoder_caches_by_sha_and_cap(tmp_path, monkeypatch):
    from vlaa_data.llm import image_encoding

    calls: list[tuple[str, int | None]] = []
    real = image_encoding.encode_data_url

    def counting(part, max_pixels):
        calls.append((part.sha, max_pixels))
        return real(part, max_pixels)

    monkeypatch.setattr(image_encoding, "encode_data_url", counting)
    part = write_image(tmp_path / "a.png", size=(100, 100))
    encoder = ImageEncoder(max_entries=2)

    async def main():
        urls = await asyncio.gather(*(encoder.encode(part, 2500) for _ in range(10)))
        assert len(set(urls)) == 1
        await encoder.encode(part, 2500)
        await encoder.encode(part, None)
        await encoder.encode(part, 100)  # evicts (sha, 2500)
        await encoder.encode(part, 2500)

    asyncio.run(main())
    assert calls == [("a", 2500), ("a", None), ("a", 100), ("a", 2500)]


def test_encoder_does_not_cache_failures(tmp_path):
    path = tmp_path / "late.png"
    part = ImagePart("late", path, 40, 30)
    encoder = ImageEncoder()

    async def main():
        with pytest.raises(CallFailed):
            await encoder.encode(part, None)
        write_image(path)
        assert (await encoder.encode(part, None)).startswith("data:image/png;base64,")

    asyncio.run(main())
