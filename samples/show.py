"""Print the first rows of a classified sample file and how often the label matches `genre`
(used by `make demo`)."""

import csv
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "build/demo/lyrics.classified.csv"
with open(path, newline="", encoding="utf-8-sig") as handle:
    rows = list(csv.DictReader(handle))
print(f"\n{'title':<30} {'genre':<8}    {'label':<8} score")
for row in rows[:12]:
    print(f"{row['title'][:30]:<30} {row['genre']:<8} -> {row['label']:<8} {row['score']}")
agree = sum(row["label"] == row["genre"] for row in rows)
print(f"\nlabel = genre column for {agree} of {len(rows)} rows ({agree / len(rows):.0%}); full output: {path}")
