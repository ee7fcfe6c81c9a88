"""Reads a CSV file with Python's csv module in the given dialect and prints the rows as JSON.
Usage: read_csv.py FILE ENCODING DELIMITER"""

import csv
import json
import sys

with open(sys.argv[1], encoding=sys.argv[2], newline="") as f:
    rows = list(csv.reader(f, delimiter=sys.argv[3], strict=True))
print(json.dumps(rows))
