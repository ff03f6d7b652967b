"""Uploads without memory (:mod:`dass.service.uploads`): the spool, the streaming multipart
parser and the zip expansion, checked by value on bodies and archives built here."""

from __future__ import annotations

import io
import os
import struct
import zipfile

import pytest

from dass.service import uploads
from dass.service.uploads import Spool, UploadRefused, expand_zip, parse_multipart

CT = "multipart/form-data; boundary=XyZ"


def body_of(*parts: tuple[str, str | None, bytes], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


class Trickle(io.RawIOBase):
    """A body that arrives a few bytes at a time (boundaries straddle the reads)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunk = self.data[self.pos:self.pos + self.step]
        self.pos += len(chunk)
        return chunk


def test_the_spool_has_no_name_and_reads_back_by_range(tmp_path):
    with Spool(str(tmp_path)) as spool:
        spool.write(b"hello ")
        spool.write(memoryview(b"world"))
        assert spool.size == 11
        assert os.listdir(tmp_path) == []  # an unnamed file: nothing to leave behind
        item = uploads.SpooledFile("w", 6, 5)
        assert spool.read(item) == b"world" and spool.read(item, 3) == b"wor"
        with spool.open(item) as fh:
            assert fh.read(2) == b"wo" and fh.seek(-1, io.SEEK_END) == 4 and fh.read() == b"d"


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_files_and_fields_come_out_whatever_the_chunks(tmp_path, step):
    big = os.urandom(300_000) + b"\r\n--Xy, the start of a boundary\r\n--"
    body = body_of(("proposal", None, b"p-2026-001"), ("files", "a.png", b"PNG"), ("files", "b.tif", big),
                   ("files", "empty.png", b""))
    with Spool(str(tmp_path)) as spool:
        fields, files = parse_multipart(CT, Trickle(body, step) if step < 1 << 20 else io.BytesIO(body), spool,
                                        max_files=3)
        assert fields == {"proposal": ["p-2026-001"]}
        assert [(f.field, f.name, f.size) for f in files] == [("files", "a.png", 3), ("files", "b.tif", len(big)),
                                                               ("files", "empty.png", 0)]
        assert spool.read(files[1]) == big and spool.read(files[0]) == b"PNG"


def test_multipart_refusals_say_what_to_fix(tmp_path):
    with Spool(str(tmp_path)) as spool:
        with pytest.raises(UploadRefused, match="too many files: at most 2 per request .c.X.n.") as e:
            parse_multipart(CT, io.BytesIO(body_of(*[("files", f"{i}.png", b"x") for i in range(3)])), spool,
                            max_files=2, settings={"files": "c.X.n"})
        assert e.value.status == 413
        with pytest.raises(UploadRefused, match="larger than 10 bytes") as e:
            parse_multipart(CT, io.BytesIO(body_of(("proposal", None, b"x" * 11))), spool, max_files=2,
                            max_field_bytes=10)
        assert e.value.status == 413
        with pytest.raises(UploadRefused, match="cannot be parsed") as e:
            parse_multipart(CT, io.BytesIO(body_of(("files", "a.png", b"abc"))[:-12]), spool, max_files=2)
        assert e.value.status == 400
        with pytest.raises(UploadRefused, match="boundary"):
            parse_multipart("multipart/form-data", io.BytesIO(b"--x"), spool, max_files=2)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def spooled_zip(spool: Spool, data: bytes) -> uploads.SpooledFile:
    spool.write(b"something before")
    start = spool.size
    spool.write(data)
    return uploads.SpooledFile("up.zip", start, len(data), "files")


def test_members_go_to_the_spool_checked_one_by_one(tmp_path):
    good = os.urandom(5000)
    data = zip_bytes({"a/good.png": good, "zeros.tif": bytes(200_000), "big.png": os.urandom(9000),
                      "__MACOSX/._a": b"x", "dir/": b""})
    with Spool(str(tmp_path)) as spool:
        archive = spooled_zip(spool, data)
        members, expanded = expand_zip(spool, archive, max_member_bytes=8000, max_ratio=100, max_total=10**6,
                                       skip=lambda m: m.filename.startswith("__MACOSX/"),
                                       settings={"ratio": "c.S.ratio", "member": "c.S.member"})
        by_name = {m.name: m for m in members}
        assert list(by_name) == ["up.zip/a/good.png", "up.zip/zeros.tif", "up.zip/big.png"]
        assert spool.read(by_name["up.zip/a/good.png"].file) == good
        assert "zip bomb" in by_name["up.zip/zeros.tif"].reason and "(c.S.ratio)" in by_name["up.zip/zeros.tif"].reason
        assert "file too large: 9000 bytes" in by_name["up.zip/big.png"].reason
        assert "(c.S.member)" in by_name["up.zip/big.png"].reason
        assert expanded == len(good)  # refused members were not inflated


def test_archives_over_the_total_are_refused_by_listing_and_while_reading(tmp_path):
    data = zip_bytes({f"{i}.png": os.urandom(1000) for i in range(5)})
    with Spool(str(tmp_path)) as spool:
        archive = spooled_zip(spool, data)
        with pytest.raises(UploadRefused, match="expand to 5000 bytes by their own listing, more than 4999") as e:
            expand_zip(spool, archive, max_member_bytes=10**6, max_ratio=100, max_total=4999)
        assert e.value.status == 413
        # the earlier archives of the request count
        with pytest.raises(UploadRefused, match="more than 5999"):
            expand_zip(spool, archive, max_member_bytes=10**6, max_ratio=100, max_total=5999, expanded=1000)
        members, expanded = expand_zip(spool, archive, max_member_bytes=10**6, max_ratio=100, max_total=5000)
        assert expanded == 5000 and all(m.file for m in members)


def lie_about_sizes(data: bytes, name: bytes, size: int) -> bytes:
    """The archive with the uncompressed size of ``name`` replaced by ``size`` in its local
    header and central directory (a listing that lies)."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = out.index(signature)
        while at >= 0:
            if out.find(name, at, at + 60) > 0:
                out[at + offset:at + offset + 4] = struct.pack("<I", size)
            at = out.find(signature, at + 4)
    return bytes(out)


def test_a_listing_that_lies_is_caught_while_reading(tmp_path):
    data = lie_about_sizes(zip_bytes({"liar.png": os.urandom(3000)}), b"liar.png", 100)
    with Spool(str(tmp_path)) as spool:
        archive = spooled_zip(spool, data)
        before = spool.size
        (member,), expanded = expand_zip(spool, archive, max_member_bytes=1000, max_ratio=100, max_total=10**6)
        assert member.file is None and "cannot be extracted" in member.reason
        assert spool.size - before <= 100  # no more than the listing declared was written


def test_not_a_zip_is_a_reason_not_a_failure(tmp_path):
    with Spool(str(tmp_path)) as spool:
        archive = spooled_zip(spool, b"PK\x03\x04 not really")
        (member,), expanded = expand_zip(spool, archive, max_member_bytes=1000, max_ratio=100, max_total=10**6)
        assert member.name == "up.zip" and "not a valid zip archive" in member.reason and expanded == 0
