#!/usr/bin/env python3
"""Writes a tiny AliExpress country folder in MTReclib's layout (train.csv,
test.csv; the layout torch-rechub's aliexpress_*.csv share): header
search_id, categorical_1..16, numerical_1..63, click, conversion.
Cases tests/test_data.c checks: 6 train rows, one of them (line 5) a
conversion without click, left out; 4 test rows split into valid and test.
Run from this directory: python3 make_fixture.py"""

header = ["search_id"] + [f"categorical_{i}" for i in range(1, 17)] + \
         [f"numerical_{i}" for i in range(1, 64)] + ["click", "conversion"]


def row(sid, cat0, num0, click, conv):
    cats = [str(cat0 if i == 0 else i % 3) for i in range(16)]
    nums = [repr(round(num0 * (i + 1) / 64, 6)) for i in range(63)]
    return ",".join([str(sid)] + cats + nums + [str(click), str(conv)])


train = [row(1, 7, 0.1, 1, 0), row(2, 8, 0.2, 0, 0), row(3, 7, 0.3, 1, 1),
         row(4, 9, 0.4, 0, 1), row(5, 8, 0.5, 0, 0), row(6, 7, 0.6, 1, 0)]
test = [row(7, 7, 0.7, 1, 0), row(8, 5, 0.8, 0, 0), row(9, 8, 0.9, 1, 1), row(10, 9, 1.0, 0, 0)]
for name, rows in (("train.csv", train), ("test.csv", test)):
    with open(name, "w", newline="\n") as f:
        f.write("\n".join([",".join(header)] + rows) + "\n")
