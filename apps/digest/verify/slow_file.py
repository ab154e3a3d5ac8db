"""A slow file server for `mid-job.http`: every GET answers the same file (8 MiB by default),
its headers at once, its body only after a pause (1.5 s) and then spread over a few seconds
(3 s), so that a digest worker is in the middle of the job for a while.

    python3 apps/digest/verify/slow_file.py [--port 8808] [--size 8388608] [--pause 1.5]
        [--seconds 3]

Prints its address (`http://127.0.0.1:PORT`) as its first line, then one JSON line per request
once it has ended: the path, when it started and ended (milliseconds since the Unix epoch), the
bytes sent and the file's size — a download that ended short was cut off by its client (a
worker stopped or killed mid-job). apps/digest/tests/verify.rs runs it and reads these lines.
The file's bytes are 0, 1, … 250 over and over."""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 64 << 10


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8808, help="0 picks a free one")
    parser.add_argument("--size", type=int, default=8 << 20)
    parser.add_argument("--pause", type=float, default=1.5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    body = (bytes(range(251)) * (args.size // 251 + 1))[: args.size]
    chunks = max(1, -(-args.size // CHUNK))
    lock = threading.Lock()

    def log(record):
        with lock:
            print(json.dumps(record), flush=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            start = now_ms()
            sent = 0
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                time.sleep(args.pause)
                for offset in range(0, len(body), CHUNK):
                    self.wfile.write(body[offset : offset + CHUNK])
                    self.wfile.flush()
                    sent = min(offset + CHUNK, len(body))
                    time.sleep(args.seconds / chunks)
            except OSError:
                pass  # the client went away: the download ends short
            log(
                {
                    "path": self.path,
                    "start_ms": start,
                    "end_ms": now_ms(),
                    "sent": sent,
                    "size": len(body),
                }
            )

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def now_ms():
    return int(time.time() * 1000)


if __name__ == "__main__":
    sys.exit(main())
