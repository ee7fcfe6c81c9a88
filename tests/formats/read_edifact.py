"""Reads an EDIFACT interchange with pydifact (an independent parser) and prints what it found
as JSON: the interchange header and trailer, and every message with its segments and its UNT.
Usage: read_edifact.py FILE ENCODING"""

import json
import sys
import warnings

warnings.simplefilter("ignore")
from pydifact.segmentcollection import Interchange  # noqa: E402

with open(sys.argv[1], encoding=sys.argv[2]) as f:
    text = f.read()
interchange = Interchange.from_str(text)
messages = []
for message in interchange.get_messages():
    messages.append({
        "reference": message.reference_number,
        "identifier": message.identifier,
        "segments": [[s.tag, s.elements] for s in message.segments],
    })
every = [[s.tag, s.elements] for s in Interchange.from_str(text).segments]
unz = interchange.get_footer_segment()
print(json.dumps({
    "syntax": list(interchange.syntax_identifier),
    "timestamp": interchange.timestamp.isoformat(),
    "unz": [unz.tag, unz.elements] if unz else None,
    "sender": interchange.sender,
    "recipient": interchange.recipient,
    "control_reference": interchange.control_reference,
    "messages": messages,
    "segments": every,
}))
