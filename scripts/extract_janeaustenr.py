"""Extract Jane Austen's novels as plain text from Debian's r-cran-janeaustenr package (no R needed).

    apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb pkg
    python scripts/extract_janeaustenr.py pkg/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb quant/texts

The lazy-load database holds consecutive blobs, each a 4-byte big-endian length and a zlib stream
of R's XDR serialisation of a character vector (one element per line of the book). Writes
persuasion.txt and northanger_abbey.txt (the two mpqsim uses: evaluation and calibration).
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

WANTED = {"Persuasion": "persuasion.txt", "NORTHANGER ABBEY": "northanger_abbey.txt"}


def blobs(data: bytes):
    off = 0
    while off < len(data):
        d = zlib.decompressobj()
        out = d.decompress(data[off + 4:])
        yield out
        off += 4 + len(data[off + 4:]) - len(d.unused_data)


def character_vector(b: bytes) -> list[str]:
    """R XDR serialisation (format 'X', version 2 or 3) of a STRSXP -> its strings."""
    if b[:2] != b"X\n":
        raise ValueError("not an XDR serialisation")
    pos = 2

    def i32():
        nonlocal pos
        (v,) = struct.unpack(">i", b[pos:pos + 4])
        pos += 4
        return v

    version = i32()
    i32(), i32()  # writer and minimal reader R versions
    if version == 3:
        n = i32()  # length of the native encoding name, which follows
        pos += n
    if (i32() & 0xFF) != 16:
        raise ValueError("not a character vector")
    out = []
    for _ in range(i32()):
        if (i32() & 0xFF) != 9:
            raise ValueError("not a CHARSXP")
        n = i32()
        out.append("" if n == -1 else b[pos:pos + n].decode("utf-8"))
        pos += max(n, 0)
    return out


def main(rdb: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for blob in blobs(Path(rdb).read_bytes()):
        lines = character_vector(blob)
        title = next(line for line in lines if line.strip())
        if title in WANTED:
            (out / WANTED[title]).write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"{title}: {len(lines)} lines -> {out / WANTED[title]}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
