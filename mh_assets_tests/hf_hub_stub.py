"""A loopback Hugging Face Hub with in-memory repos, for tests of publishing with the real ``huggingface_hub`` client.

It speaks the slice of the Hub HTTP API that ``HfApi.create_repo``, ``HfApi.upload_folder`` (huggingface_hub 1.x,
hf_xet installed or not) and ``HfApi.list_repo_commits`` use. The preupload endpoint answers "regular" for every file,
so the client inlines each file as base64 in the commit NDJSON and never talks LFS or Xet storage. Any other path is
logged to stderr and answered 404, so gaps show up.
"""

import base64
import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

USER = "stub-user"
BAD_TOKEN = "Invalid credentials in Authorization header"
NO_TOKEN = "Invalid username or password."
SERVER_ERROR = "Internal Error - We're working hard to fix this as soon as possible!"
REPO_KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_id(data: bytes) -> str:
    """The git blob SHA-1 of ``data``: what the Hub reports as a regular file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubState:
    """What the fake Hub holds and has seen; shared between the test and the server threads."""

    endpoint: str
    token: str
    fail_commits: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def files(self, repo_id: str) -> dict[str, bytes]:
        """Path -> content at the head of ``repo_id`` (empty before the first commit)."""
        commits = self.repos[repo_id]["commits"]
        return dict(commits[-1]["files"]) if commits else {}

    def repo_url(self, repo_id: str, kind: str = "model") -> str:
        """The web URL the Hub gives for a repo (what ``RepoUrl`` parses)."""
        return f"{self.endpoint}/{URL_PREFIX[kind]}{repo_id}"


class HubError(Exception):
    """An error answer: HTTP status, message, and optional ``X-Error-Code``."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


def _now() -> str:
    """The Hub's timestamp format, e.g. ``2024-05-01T12:00:00.000Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _commit(state: HubState, repo_id: str, ndjson: bytes) -> dict:
    """Apply one NDJSON commit payload to ``repo_id``; returns the commit response body."""
    lines = [json.loads(line) for line in ndjson.splitlines() if line.strip()]
    if not lines or lines[0].get("key") != "header":
        raise HubError(400, "Invalid commit payload: first line must be the header")
    header = lines[0]["value"]
    repo = state.repos[repo_id]
    head = repo["commits"][-1]["id"] if repo["commits"] else None
    if header.get("parentCommit") not in (None, head):
        raise HubError(412, "A commit has happened since. Please refresh and try again.")
    files = state.files(repo_id)
    for line in lines[1:]:
        key, value = line["key"], line["value"]
        path = value["path"]
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding for {path!r}")
            files[path] = base64.b64decode(value["content"])
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        elif key == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            files = {p: b for p, b in files.items() if not p.startswith(prefix)}
        else:  # lfsFile etc.: the stub stores no LFS/Xet objects, and never asks for them
            raise HubError(400, f"hf_hub_stub: unsupported commit operation {key!r} for {path!r}")
    title = header.get("summary") or ""
    seed = f"{repo_id}\0{head}\0{len(repo['commits'])}\0{title}\0" + "".join(
        f"{p}\0{git_blob_id(b)}\0" for p, b in sorted(files.items())
    )
    oid = hashlib.sha1(seed.encode()).hexdigest()
    repo["commits"].append({
        "id": oid, "title": title, "message": header.get("description") or "", "date": _now(), "files": files,
    })  # fmt: skip
    return {
        "success": True,
        "commitOid": oid,
        "commitUrl": f"{state.repo_url(repo_id, repo['type'])}/commit/{oid}",
        "hookOutput": "",
        "pullRequestUrl": None,
    }


def _find_commit(state: HubState, repo_id: str, revision: str) -> dict | None:
    """The commit ``revision`` names ("main" or a commit id); None for "main" of an empty repo."""
    commits = state.repos[repo_id]["commits"]
    if revision == "main":
        return commits[-1] if commits else None
    for commit in commits:
        if commit["id"] == revision:
            return commit
    raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def _repo_info(state: HubState, repo_id: str, revision: str) -> dict:
    """The body of ``GET /api/models/{repo_id}[/revision/{rev}]``."""
    repo, commit = state.repos[repo_id], _find_commit(state, repo_id, revision)
    files = commit["files"] if commit else {}
    return {
        "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
        "id": repo_id,
        "author": repo_id.split("/")[0],
        "sha": commit["id"] if commit else None,
        "private": repo["private"],
        "gated": False,
        "disabled": False,
        "lastModified": commit["date"] if commit else repo["created"],
        "createdAt": repo["created"],
        "tags": [],
        "downloads": 0,
        "likes": 0,
        "siblings": [{"rfilename": path} for path in sorted(files)],
    }


def _tree(state: HubState, repo_id: str, revision: str, prefix: str, recursive: bool) -> list[dict]:
    """The body of ``GET /api/models/{repo_id}/tree/{rev}[/{path}]``."""
    commit = _find_commit(state, repo_id, revision)
    files = commit["files"] if commit else {}
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    entries: dict[str, dict] = {}
    for path, data in sorted(files.items()):
        if not path.startswith(base):
            continue
        rest = path[len(base) :]
        if recursive or "/" not in rest:
            entries[path] = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path}
        parts = rest.split("/")[:-1]
        for depth in range(1, (len(parts) if recursive else min(len(parts), 1)) + 1):
            folder = base + "/".join(parts[:depth])
            entries.setdefault(folder, {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                        "size": 0, "path": folder})  # fmt: skip
    return sorted(entries.values(), key=lambda e: e["path"])


@contextmanager
def hf_hub_stub(token: str = "hf_test", fail_commits: int = 0) -> Iterator[HubState]:
    """Serve a fake Hub on 127.0.0.1; yields its ``HubState`` (``.endpoint``, ``.requests``, ``.repos``, ``.files``).

    Every request must carry ``Authorization: Bearer <token>``; the first ``fail_commits`` commit POSTs answer 500.
    """
    state = HubState(endpoint="", token=token, fail_commits=fail_commits)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers
                    pass
                return data
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            url = urlsplit(self.path)
            state.requests.append((self.command, self.path, dict(self.headers.items())))
            body = self._body() if self.command in ("POST", "PUT", "DELETE") else b""
            auth = self.headers.get("Authorization")
            try:
                if auth != f"Bearer {token}":
                    raise HubError(401, BAD_TOKEN if auth else NO_TOKEN)
                with state.lock:
                    status, payload = self._route(url.path, parse_qs(url.query), body)
            except HubError as err:
                headers = {"X-Error-Message": err.message}
                if err.code:
                    headers["X-Error-Code"] = err.code
                self._send(err.status, {"error": err.message, **err.extra}, headers)
                return
            self._send(status, payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        def _route(self, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
            method = self.command
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if method == "GET" and path == "/api/whoami-v2":
                return 200, {
                    "type": "user", "id": "0" * 24, "name": USER, "fullname": "Stub User", "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "stub", "role": "write"}},
                }  # fmt: skip
            if method == "POST" and path == "/api/validate-yaml":
                return 200, {"errors": [], "warnings": []}
            if method in ("POST", "DELETE") and path in ("/api/repos/create", "/api/repos/delete"):
                payload = json.loads(body or b"{}")
                kind = payload.get("type") or "model"
                repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
                if path.endswith("/delete"):
                    if state.repos.pop(repo_id, None) is None:
                        raise HubError(404, "Repository not found", "RepoNotFound")
                    return 200, {}
                if repo_id in state.repos:
                    url = state.repo_url(repo_id, state.repos[repo_id]["type"])
                    raise HubError(409, f"You already created this {kind} repo", extra={"url": url})
                private = payload.get("visibility") == "private" or payload.get("private") is True
                state.repos[repo_id] = {"private": private, "type": kind, "commits": [], "created": _now()}
                return 200, {"url": state.repo_url(repo_id, kind), "name": repo_id, "id": "0" * 24}
            if len(parts) >= 4 and parts[0] == "api" and parts[1] in REPO_KINDS:
                return self._repo_route(method, REPO_KINDS[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:], query, body)
            return self._unexpected()

        def _repo_route(
            self, method: str, kind: str, repo_id: str, rest: list[str], query: dict[str, list[str]], body: bytes
        ) -> tuple[int, Any]:
            repo = state.repos.get(repo_id)
            if repo is None or repo["type"] != kind:
                raise HubError(404, "Repository not found", "RepoNotFound")
            action, revision = (rest[0], "/".join(rest[1:2]) or "main") if rest else ("", "main")
            if method == "GET" and (not rest or (action == "revision" and len(rest) == 2)):
                return 200, _repo_info(state, repo_id, revision)
            if method == "GET" and action == "tree" and len(rest) >= 2:
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                return 200, _tree(state, repo_id, revision, "/".join(rest[2:]), recursive)
            if method == "GET" and action == "commits" and len(rest) == 2:
                commit = _find_commit(state, repo_id, revision)
                commits = repo["commits"][: repo["commits"].index(commit) + 1] if commit else []
                return 200, [
                    {"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
                     "authors": [{"user": USER, "avatar": ""}]}
                    for c in reversed(commits)
                ]  # fmt: skip
            if method == "POST" and action in ("preupload", "commit") and len(rest) == 2:
                if revision != "main":
                    raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                if action == "commit":
                    if state.fail_commits > 0:
                        state.fail_commits -= 1
                        raise HubError(500, SERVER_ERROR)
                    return 200, _commit(state, repo_id, body)
                current = state.files(repo_id)
                files = json.loads(body)["files"]
                return 200, {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                         "oid": git_blob_id(current[f["path"]]) if f["path"] in current else None}
                        for f in files
                    ],
                    "commitOid": repo["commits"][-1]["id"] if repo["commits"] else None,
                }  # fmt: skip
            return self._unexpected()

        def _unexpected(self) -> tuple[int, Any]:
            print(f"hf_hub_stub: unexpected request {self.command} {self.path}", file=sys.stderr)
            raise HubError(404, f"hf_hub_stub: no route for {self.command} {urlsplit(self.path).path}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
