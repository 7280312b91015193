#!/usr/bin/env python3
"""A registry that lies: forwards every request to a real registry and
spoils the body of each blob it serves, for scripts/proxy-e2e.sh.

usage: corrupt_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT MODE
  MODE truncate: the blob's Content-Length is kept, its last 1000 bytes
                 never come (the connection closes early);
  MODE flip:     every byte comes, the last one changed.
Each request is logged to stdout as "METHOD PATH STATUS", so the script
can count what reached it.
"""
import http.client
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, UPSTREAM, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        conn = http.client.HTTPConnection(UPSTREAM, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn.request(self.command, self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        blob = self.command == "GET" and "/blobs/sha256:" in self.path and resp.status == 200
        print(f"{self.command} {self.path} {resp.status}", flush=True)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        length = resp.getheader("Content-Length", str(len(body)))
        self.send_header("Content-Length", length if self.command == "HEAD" else str(len(body)))
        if blob and MODE == "truncate":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[:-1000])
            self.wfile.flush()
            self.close_connection = True
            return
        self.end_headers()
        if blob and MODE == "flip":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = forward
    do_HEAD = forward

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()
