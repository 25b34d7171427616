#!/usr/bin/env python3
"""capture.py PORT LOG FIXTURES: the HTTP server that stands in for Salesforce
and Slack in the n8n test (deploy/n8n/test/run).

Every request is appended to LOG as one JSON line {method, path, headers, body}.
- GET /services/data/v59.0/query?q=SOQL answers the query from FIXTURES
  (records per object, as Salesforce's REST API returns them): the object
  after FROM, the records whose Id is in a `Id IN (...)` list if the query has
  one, each with the selected fields only (and `attributes`), as Salesforce does.
- PATCH /services/data/v59.0/sobjects/... answers 204, as Salesforce does.
- Anything else (a Slack incoming webhook) answers 200 "ok"."""
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def answer_query(soql, fixtures):
    m = re.match(r"\s*SELECT\s+(.+?)\s+FROM\s+(\w+)(.*)$", soql, re.I | re.S)
    if not m:
        return 400, [{"errorCode": "MALFORMED_QUERY", "message": soql}]
    fields = [f.strip() for f in m.group(1).split(",")]
    records = fixtures.get(m.group(2), [])
    ids = re.search(r"\bId\s+IN\s*\(([^)]*)\)", m.group(3), re.I)
    if ids:
        wanted = {s.strip().strip("'") for s in ids.group(1).split(",")}
        records = [r for r in records if r["Id"] in wanted]
    out = []
    for r in records:
        lower = {k.lower(): k for k in r}
        unknown = [f for f in fields if f.lower() not in lower]
        if unknown:
            return 400, [{"errorCode": "INVALID_FIELD", "message": "No such column '%s'" % unknown[0]}]
        row = {"attributes": r["attributes"]}
        row.update({lower[f.lower()]: r[lower[f.lower()]] for f in fields})
        out.append(row)
    return 200, {"totalSize": len(out), "done": True, "records": out}


class Capture(BaseHTTPRequestHandler):
    def _reply(self, status, payload=None, content_type="application/json"):
        data = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        entry = {"method": self.command, "path": self.path,
                 "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        with open(self.server.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        url = urlsplit(self.path)
        if self.command == "GET" and url.path.endswith("/query"):
            status, payload = answer_query(parse_qs(url.query).get("q", [""])[0], self.server.fixtures)
            self._reply(status, payload)
        elif self.command == "PATCH" and "/sobjects/" in url.path:
            self._reply(204)
        else:
            self._reply(200, b"ok", "text/plain")

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def log_message(self, fmt, *args):
        pass


def main():
    port, log_path, fixtures = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = ThreadingHTTPServer(("127.0.0.1", port), Capture)
    server.log_path = log_path
    with open(fixtures, encoding="utf-8") as f:
        server.fixtures = json.load(f)
    server.serve_forever()


if __name__ == "__main__":
    main()
