#!/usr/bin/env python3
"""Writes the four files of a tiny Ali-CCP in the release's exact format
(Tianchi dataset 408; as read by the AITM / torch-rechub preprocessing):
  sample_skeleton_*.csv: sample_id,click,conversion,common_feature_index,feature_num,features
  common_features_*.csv: common_feature_index,feature_num,features
features: field_id \\x02 feature_id \\x03 value, joined by \\x01; no header, LF line ends.
Cases tests/test_data.c checks: a common value overrides the sample's (101 of
sample 5), a repeated field keeps its last value (210 of sample 2), an unknown
field is ignored (999), a conversion without click is left out (sample 4,
line 4), an unused common line (c3), dense values from both files (508, 109_14).
Run from this directory: python3 make_fixture.py"""


def feats(*triples):
    return "\x01".join(f"{f}\x02{i}\x03{v}" for f, i, v in triples)


def line(*cols):
    return ",".join(str(c) for c in cols)


def sample(sid, click, conv, idx, *triples):
    return line(sid, click, conv, idx, len(triples), feats(*triples))


def common(idx, *triples):
    return line(idx, len(triples), feats(*triples))


files = {
    "common_features_train.csv": [
        common("c1", ("101", "u1", "1.0"), ("121", "a1", "1.0"), ("109_14", "g1", "0.5")),
        common("c2", ("101", "u2", "1.0"), ("121", "a2", "1.0")),
        common("c3", ("101", "u9", "1.0")),
    ],
    "sample_skeleton_train.csv": [
        sample(1, 1, 0, "c1", ("205", "i1", "1.0"), ("508", "b1", "0.7"), ("999", "zz", "1.0")),
        sample(2, 0, 0, "c1", ("205", "i2", "1.0"), ("210", "t1", "1.0"), ("210", "t2", "1.0")),
        sample(3, 1, 1, "c2", ("205", "i1", "1.0")),
        sample(4, 0, 1, "c2", ("205", "i3", "1.0")),
        sample(5, 0, 0, "c2", ("205", "i2", "1.0"), ("101", "uX", "1.0")),
        sample(6, 1, 0, "c1", ("205", "i4", "1.0"), ("508", "b2", "0.1")),
    ],
    "common_features_test.csv": [
        common("t1", ("101", "u1", "1.0"), ("150_14", "h1", "2.5")),
        common("t2", ("101", "u7", "1.0")),
    ],
    "sample_skeleton_test.csv": [
        sample(7, 1, 0, "t1", ("205", "i1", "1.0")),
        sample(8, 0, 0, "t2", ("205", "i5", "1.0")),
        sample(9, 1, 1, "t1", ("205", "i2", "1.0")),
        sample(10, 0, 0, "t2", ("205", "i4", "1.0")),
    ],
}
for name, lines in files.items():
    with open(name, "w", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
