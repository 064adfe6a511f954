"""A minimal stand-in for the Hugging Face Hub HTTP API on 127.0.0.1, for testing upload/download code offline.

It implements what `HfApi.create_repo`, `HfApi.upload_folder` (small files, "regular" uploads inlined in the commit)
and `hf_hub_download` send: `POST /api/repos/create`, `POST /api/validate-yaml`, `POST /api/{type}s/{repo}/preupload/
{rev}`, `POST /api/{type}s/{repo}/commit/{rev}` and `HEAD`/`GET /{type}s/{repo}/resolve/{rev}/{path}`. Committed
files land in `root/{type}s/{repo}/`, so a test can compare them with what it uploaded. Every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Start with `with FakeHub(tmp_path) as hub:`; `hub.endpoint` is the base URL."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None, send_body: bool = True):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _json(self, payload) -> None:
                self._reply(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_POST(self) -> None:  # noqa: N802
                path = unquote(urlparse(self.path).path)
                hub.requests.append(("POST", path))
                body = self._body()
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    hub.created.append(payload)
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    return self._json({"url": f"{hub.endpoint}/{payload.get('type', 'model')}s/{repo_id}"})
                if path == "/api/validate-yaml":
                    return self._json({"errors": [], "warnings": []})
                parts = path.split("/")  # ['', 'api', 'datasets', org, name, action, rev]
                if len(parts) == 7 and parts[1] == "api" and parts[5] == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                    )
                if len(parts) >= 7 and parts[1] == "api" and parts[5] == "paths-info":
                    repo_dir = hub.root / parts[2] / parts[3] / parts[4]
                    fields = (
                        parse_qs(body.decode()) if body and not body.startswith(b"{") else json.loads(body or b"{}")
                    )
                    wanted = fields.get("paths", [])
                    return self._json([hub.entry(repo_dir, repo_dir / p) for p in wanted if (repo_dir / p).exists()])
                if len(parts) == 7 and parts[1] == "api" and parts[5] == "commit":
                    repo_dir = hub.root / parts[2] / parts[3] / parts[4]
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            target = repo_dir / item["value"]["path"]
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_bytes(base64.b64decode(item["value"]["content"]))
                    return self._json(
                        {
                            "commitUrl": f"{hub.endpoint}/{parts[2]}/{parts[3]}/{parts[4]}/commit/{COMMIT}",
                            "commitOid": COMMIT,
                        }
                    )
                self._reply(404, b"not implemented in FakeHub")

            def _entries(self, repo_dir: Path, under: str, recursive: bool) -> list[dict]:
                base = repo_dir / under if under else repo_dir
                if not base.exists():
                    return []
                paths = base.rglob("*") if recursive else base.iterdir()
                return [hub.entry(repo_dir, p) for p in sorted(paths)]

            def _api_get(self, parts: list[str], query: str) -> None:
                # ['', 'api', 'datasets', org, name, 'revision' | 'tree', rev, *path]
                repo_dir = hub.root / parts[2] / parts[3] / parts[4]
                if not repo_dir.is_dir():
                    return self._reply(404, b"repository not found", {"X-Error-Code": "RepoNotFound"})
                if parts[5] == "revision":
                    siblings = [
                        {"rfilename": str(p.relative_to(repo_dir))} for p in repo_dir.rglob("*") if p.is_file()
                    ]
                    return self._json(
                        {"id": f"{parts[3]}/{parts[4]}", "sha": COMMIT, "private": False, "siblings": siblings}
                    )
                if parts[5] == "tree":
                    return self._json(self._entries(repo_dir, "/".join(parts[7:]), "recursive=true" in query.lower()))
                self._reply(404, b"not implemented in FakeHub")

            def _resolve(self, send_body: bool) -> None:
                url = urlparse(self.path)
                path = unquote(url.path)
                hub.requests.append((self.command, path))
                parts = path.split("/")  # ['', 'datasets', org, name, 'resolve', rev, *file]
                if parts[1] == "api" and len(parts) >= 7:
                    return self._api_get(parts, url.query)
                if len(parts) < 7 or parts[4] != "resolve":
                    return self._reply(404, b"not found", send_body=send_body)
                file = hub.root / parts[1] / parts[2] / parts[3] / "/".join(parts[6:])
                if not file.is_file():
                    return self._reply(404, b"entry not found", {"X-Error-Code": "EntryNotFound"}, send_body)
                data = file.read_bytes()
                headers = {
                    "X-Repo-Commit": COMMIT,
                    "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                    "Accept-Ranges": "bytes",
                }
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes="):
                    first, _, last = ranged[len("bytes=") :].partition("-")
                    start, stop = int(first or 0), min(int(last) + 1 if last else len(data), len(data))
                    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
                    return self._reply(206, data[start:stop], headers, send_body)
                self._reply(200, data, headers, send_body)

            def do_HEAD(self) -> None:  # noqa: N802
                self._resolve(send_body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._resolve(send_body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @staticmethod
    def entry(repo_dir: Path, path: Path) -> dict:
        """A tree entry as the Hub lists it."""
        relative = str(path.relative_to(repo_dir))
        if path.is_dir():
            return {"type": "directory", "path": relative, "oid": "0" * 40, "size": 0}
        data = path.read_bytes()
        return {"type": "file", "path": relative, "oid": hashlib.sha1(data).hexdigest(), "size": len(data)}

    def repo_dir(self, repo_id: str, repo_type: str = "dataset") -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
