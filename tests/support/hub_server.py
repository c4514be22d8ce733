"""A Hugging Face Hub on 127.0.0.1 for tests: the subset of the protocol that huggingface_hub's
`repo_info`, `list_repo_tree` and `snapshot_download` speak, over files held in memory.

    with HubServer({"org/model": {"config.json": b"...", "model.safetensors": b"..."}}) as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint

Files matching `*.safetensors` or `*.bin` are served as LFS files (sha256 published in the tree
API and the ETag), the others as plain git files (git blob id). Faults, for resume tests:
`cut_after(repo, path, n)` ends the next GET of that file after n bytes. Every request is
recorded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_LFS_PATTERNS = ("*.safetensors", "*.bin")
_COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Request:
    def __init__(self, method: str, repo: str, path: str, range_header: str | None, sent: int):
        self.method, self.repo, self.path = method, repo, path
        self.range, self.bytes_sent = range_header, sent


class HubServer:
    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[Request] = []
        self._cuts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def cut_after(self, repo: str, path: str, nbytes: int) -> None:
        with self._lock:
            self._cuts[(repo, path)] = nbytes

    def clear_cuts(self) -> None:
        with self._lock:
            self._cuts.clear()

    def gets(self, repo: str | None = None, path: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.method == "GET" and repo in (None, r.repo) and path in (None, r.path)
        ]

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _take_cut(self, repo: str, path: str) -> int | None:
        with self._lock:
            return self._cuts.pop((repo, path), None)

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def is_lfs(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in _LFS_PATTERNS)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def tree_entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
    if is_lfs(path):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._route(send_body=False)

        def do_GET(self) -> None:
            self._route(send_body=True)

        def _route(self, send_body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            if match := re.fullmatch(r"/api/models/(.+)/revision/([^/]+)", path):
                self._repo_info(match[1])
            elif match := re.fullmatch(r"/api/models/(.+)/tree/([^/]+)(/.*)?", path):
                self._tree(match[1])
            elif match := re.fullmatch(r"/(.+?/.+?)/resolve/([^/]+)/(.+)", path):
                self._file(match[1], match[3], send_body)
            else:
                self._json(404, {"error": f"not served: {path}"})

        def _repo_info(self, repo: str) -> None:
            if repo not in hub.repos:
                self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return
            siblings = [{"rfilename": p} for p in sorted(hub.repos[repo])]
            self._json(200, {"id": repo, "modelId": repo, "sha": _COMMIT, "siblings": siblings})

        def _tree(self, repo: str) -> None:
            files = hub.repos.get(repo)
            if files is None:
                self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return
            self._json(200, [tree_entry(p, d) for p, d in sorted(files.items())])

        def _file(self, repo: str, path: str, send_body: bool) -> None:
            data = hub.repos.get(repo, {}).get(path)
            if data is None:
                self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                return
            etag = hashlib.sha256(data).hexdigest() if is_lfs(path) else git_blob_id(data)
            start = 0
            range_header = self.headers.get("Range")
            if range_header and (match := re.fullmatch(r"bytes=(\d+)-", range_header)):
                start = int(match[1])
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", _COMMIT)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not send_body:
                hub._record(Request("HEAD", repo, path, range_header, 0))
                return
            cut = hub._take_cut(repo, path)
            sent = body if cut is None else body[:cut]
            self.wfile.write(sent)
            self.wfile.flush()
            hub._record(Request("GET", repo, path, range_header, len(sent)))
            if cut is not None:
                # A dropped connection mid-body, as a network failure looks to the client.
                self.close_connection = True
                self.connection.shutdown(2)

        def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler
