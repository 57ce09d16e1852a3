# parse.py reads a message on stdin with Python's email package (policy
# default, the modern parser) and prints what it decoded as JSON, so the
# Go tests can compare it with what they composed.
import base64, email, json, sys
from email import policy

msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
out = {
    "subject": str(msg["subject"]),
    "from": [{"name": a.display_name, "addr": a.addr_spec} for a in msg["from"].addresses],
    "to": [{"name": a.display_name, "addr": a.addr_spec} for a in msg["to"].addresses] if msg["to"] else [],
    "cc": [{"name": a.display_name, "addr": a.addr_spec} for a in msg["cc"].addresses] if msg["cc"] else [],
    "bcc": msg["bcc"] is not None,
    "date": msg["date"] is not None and msg["date"].datetime is not None,
    "message_id": str(msg["message-id"] or ""),
    "defects": [type(d).__name__ for p in msg.walk() for d in p.defects],
    "headers": {k: str(v) for k, v in msg.items()},
    "parts": [],
}
for p in msg.walk():
    entry = {"type": p.get_content_type(), "multipart": p.is_multipart()}
    if not p.is_multipart():
        c = p.get_content()
        if isinstance(c, str):
            entry["text"] = c
        else:
            entry["data"] = base64.b64encode(c).decode()
        entry["filename"] = p.get_filename()
        entry["disposition"] = p.get_content_disposition()
        entry["cid"] = p["content-id"] and str(p["content-id"])
    out["parts"].append(entry)
json.dump(out, sys.stdout, ensure_ascii=False)
