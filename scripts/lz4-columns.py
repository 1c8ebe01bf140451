#!/usr/bin/env python3
"""Writes LZ4-compressed column-like data, the way MatrixOne stores column
blocks in its objects (each column chunk LZ4-compressed on its own), for
measuring what zstd gains on top: TPC-H lineitem-like columns (sorted keys,
small integers, decimals, dates, flags, low-cardinality strings, comments),
8192 rows a block, each column compressed with `lz4 -1` in independent
64 KiB blocks. Usage: lz4-columns.py OUT BYTES"""
import os, random, struct, subprocess, sys, tempfile

out, want = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
words = ("the quick final furious pending regular special express ironic "
         "careful bold silent even blithe slyly carefully deposits accounts "
         "requests packages instructions theodolites foxes pinto beans").split()
modes = [b"AIR", b"MAIL", b"RAIL", b"SHIP", b"TRUCK", b"FOB", b"REG AIR"]
instr = [b"DELIVER IN PERSON", b"COLLECT COD", b"NONE", b"TAKE BACK RETURN"]
ROWS = 8192
written = 0
order = 1
with open(out, "wb") as f, tempfile.TemporaryDirectory() as tmp:
    while written < want:
        cols = [bytearray() for _ in range(12)]
        for _ in range(ROWS * 8):
            if rng.random() < 0.25:
                order += rng.randint(1, 4)
            cols[0] += struct.pack("<q", order)
            cols[1] += struct.pack("<i", rng.randint(1, 200000))
            cols[2] += struct.pack("<i", rng.randint(1, 10000))
            cols[3] += struct.pack("<i", rng.randint(1, 7))
            cols[4] += struct.pack("<q", rng.randint(1, 50) * 100)
            cols[5] += struct.pack("<q", rng.randint(90000, 10500000))
            cols[6] += struct.pack("<q", rng.randint(0, 10))
            cols[7] += struct.pack("<i", 8000 + rng.randint(0, 2500))
            cols[8] += rng.choice([b"A", b"N", b"R"]) + rng.choice([b"F", b"O"])
            cols[9] += rng.choice(modes) + b"\0"
            cols[10] += rng.choice(instr) + b"\0"
            cols[11] += b" ".join(rng.choice(words).encode() for _ in range(rng.randint(3, 7))) + b"\0"
        for i, c in enumerate(cols):
            raw = os.path.join(tmp, f"c{i}")
            with open(raw, "wb") as r:
                r.write(c)
            subprocess.run(["lz4", "-1", "-B4", "-BI", "-q", "-f", raw, raw + ".lz4"], check=True, stderr=subprocess.DEVNULL)
            with open(raw + ".lz4", "rb") as z:
                data = z.read()
            f.write(data)
            written += len(data)
