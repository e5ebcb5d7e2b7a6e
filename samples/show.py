"""Print the first rows of a classified sample file and how often the label matches `genre`
(used by `make demo`)."""

import csv
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "build/demo/lyrics.classified.csv"
with open(path, newline="", encoding="utf-8-sig") as handle:
    rows = list(csv.DictReader(handle))
# multilingual.csv has its own `language` column, so the added ones are named predicted_*
added = "predicted_" if rows and "predicted_label" in rows[0] else ""
label, score, language = (f"{added}{name}" for name in ("label", "score", "language"))
step = max(1, len(rows) // 12)  # spread over the file (multilingual.csv is sorted by language)
print(f"\n{'title':<30} {'genre':<8}    {'label':<8} score  language")
for row in rows[::step][:12]:
    print(f"{row['title'][:30]:<30} {row['genre']:<8} -> {row[label]:<8} {row[score]} {row[language]}")
agree = sum(row[label] == row["genre"] for row in rows)
print(f"\nlabel = genre column for {agree} of {len(rows)} rows ({agree / len(rows):.0%}); full output: {path}")
print("(half of the sample rows are the default model's tuning examples: README's accuracy table is "
      "measured on the other half, by `python bench/languages.py`)")
