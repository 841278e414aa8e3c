"""A small in-memory Hugging Face Hub for tests: the HTTP calls ``huggingface_hub`` makes to push and pull.

The real client is pointed at it with ``HF_ENDPOINT`` (see ``HubServer.client_env``); nothing is mocked on the
client side. It implements:

* ``GET /api/whoami-v2``: the user behind the bearer token.
* ``POST /api/repos/create``: a model repo, with an initial commit of ``.gitattributes``; 409 if it exists.
* ``POST /api/models/{repo}/preupload/{rev}``: every file goes inline (``uploadMode: regular``, no LFS / Xet),
  with the git blob id of the file already there so the client skips unchanged files.
* ``POST /api/models/{repo}/commit/{rev}``: an NDJSON body of a ``header`` line, then ``file`` (base64
  content), ``deletedFile`` and ``deletedFolder`` lines; ``lfsFile`` lines are refused. Each commit gets a
  40-hex id derived from its parent, message and files, and moves the branch.
* ``GET /api/models/{repo}[/revision/{rev}]``: repo info (``sha``, ``siblings``, the card's ``pipeline_tag``,
  ``library_name`` and ``tags``).
* ``GET /api/models/{repo}/tree/{rev}[/{path}]`` and ``POST /api/models/{repo}/paths-info/{rev}``.
* ``HEAD`` / ``GET /{repo}/resolve/{rev}/{path}``: the file with ``ETag`` (git blob id), ``X-Repo-Commit`` and
  ``Content-Length``; 404s carry the ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound``) the client turns into its typed errors.

Every request is recorded in ``HubServer.requests`` as ``"METHOD /path"`` so tests can check what the client
called. Run ``python tests/hub_server.py`` to serve one by hand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml  # PyYAML, a dependency of huggingface_hub

USER = "user"
TOKEN = "hf_local_test_token"
DEFAULT_BRANCH = "main"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"

REPO = r"(?P<repo>[^/]+/[^/]+|[^/]+)"
API_ROUTES = [
    ("GET", re.compile(r"/api/whoami-v2"), "whoami"),
    ("POST", re.compile(r"/api/repos/create"), "create_repo"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("POST", re.compile(rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)"), "commit"),
    ("POST", re.compile(rf"/api/models/{REPO}/paths-info/(?P<rev>[^/]+)"), "paths_info"),
    ("GET", re.compile(rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "tree"),
    ("GET", re.compile(rf"/api/models/{REPO}/revision/(?P<rev>[^/]+)"), "repo_info"),
    ("GET", re.compile(rf"/api/models/{REPO}"), "repo_info"),
]
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
# The Hub's task ids that a model card of this package can carry (the Hub accepts many more).
PIPELINE_TAGS = {
    "text-classification",
    "text-generation",
    "fill-mask",
    "feature-extraction",
    "token-classification",
}
RESOLVE = re.compile(rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)")


def git_blob_id(content: bytes) -> str:
    """The id git gives a file's content (what the Hub reports as a regular file's ``oid`` and ``ETag``)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    """One commit: its id, message and the full file tree after it."""

    oid: str
    message: str
    files: dict[str, bytes]
    date: str


@dataclass
class Repo:
    """A model repo: its branches (name -> commit id) and every commit by id."""

    repo_id: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def add_commit(self, branch: str, message: str, files: dict[str, bytes]) -> Commit:
        """Records a commit on top of ``branch`` and moves the branch to it."""
        parent = self.branches.get(branch, "")
        digest = hashlib.sha1(f"{self.repo_id}\0{parent}\0{message}\0{len(self.commits)}".encode())
        for path in sorted(files):
            digest.update(f"\0{path}\0{git_blob_id(files[path])}".encode())
        commit = Commit(digest.hexdigest(), message, files, datetime.now(timezone.utc).isoformat())
        self.commits[commit.oid] = commit
        self.branches[branch] = commit.oid
        return commit

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch name or a full commit id points to."""
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class HubError(Exception):
    """An HTTP error with the Hub's ``X-Error-Code`` header."""

    def __init__(
        self, status: int, message: str, code: str | None = None, errors: list[str] | None = None, **extra
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.errors = status, message, code, errors or []
        self.extra = extra  # more fields of the JSON body


class HubStore:
    """The repos, guarded by one lock (the server is threaded)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()

    def repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return self.repos[repo_id]

    def commit(self, repo_id: str, revision: str) -> Commit:
        commit = self.repo(repo_id).resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def create(self, repo_id: str, url: str) -> Repo:
        if repo_id in self.repos:
            raise HubError(409, "You already created this model repo", url=url)  # the client reads "url"
        repo = self.repos[repo_id] = Repo(repo_id)
        repo.add_commit(DEFAULT_BRANCH, "initial commit", {".gitattributes": GITATTRIBUTES})
        return repo


def card_metadata(readme: bytes | None) -> dict:
    """The YAML header of a README (``{}`` without one); ``HubError`` 400 if it is not a YAML mapping."""
    if not readme:
        return {}
    match = re.match(r"---\r?\n(.*?)\r?\n---(\r?\n|$)", readme.decode("utf-8", "replace"), re.DOTALL)
    if not match:
        return {}
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        raise HubError(400, f"Invalid YAML in README.md: {error}") from error
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise HubError(400, "The YAML header of README.md must be a mapping")
    return metadata


def metadata_errors(metadata: dict) -> list[str]:
    """The checks of the Hub's metadata validation that a model card can fail here (a subset of the Hub's)."""
    errors = []
    if "license" in metadata and not (
        isinstance(metadata["license"], str) and re.fullmatch(r"[a-z0-9.-]+", metadata["license"])
    ):
        errors.append('"license" must be a license identifier such as apache-2.0')
    if "pipeline_tag" in metadata and metadata["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" must be one of {sorted(PIPELINE_TAGS)}')
    for key in ("tags", "datasets", "metrics", "language"):
        if key in metadata and not _strings(metadata[key]):
            errors.append(f'"{key}" must be a string or a list of strings')
    base_models = metadata.get("base_model", [])
    if not _strings(base_models) or not all(
        REPO_ID.fullmatch(name) for name in ([base_models] if isinstance(base_models, str) else base_models)
    ):
        errors.append('"base_model" must be a model id (or a list of model ids) on the Hub')
    errors += model_index_errors(metadata.get("model-index", []))
    return errors


def _strings(value) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def model_index_errors(model_index) -> list[str]:
    """``model-index``: a list of models, each with a name and results of (task, dataset, metrics)."""
    if not isinstance(model_index, list):
        return ['"model-index" must be a list']
    errors = []
    for model in model_index:
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append('"model-index" entries need a "name"')
            continue
        for result in model.get("results", []):
            task, dataset, metrics = result.get("task", {}), result.get("dataset", {}), result.get("metrics")
            if not isinstance(task.get("type"), str):
                errors.append('"model-index" results need a "task.type"')
            if not (isinstance(dataset.get("type"), str) and isinstance(dataset.get("name"), str)):
                errors.append('"model-index" results need a "dataset.type" and "dataset.name"')
            if not isinstance(metrics, list) or not all(
                isinstance(m.get("type"), str) and isinstance(m.get("value"), (int, float, str))
                for m in metrics
            ):
                errors.append('"model-index" results need "metrics", each with a "type" and a "value"')
    return errors


def validate_readme(readme: bytes | None) -> None:
    """The Hub's 400 ``Invalid metadata`` error for a README whose metadata fails ``metadata_errors``."""
    errors = metadata_errors(card_metadata(readme))
    if errors:
        raise HubError(400, "Invalid metadata in README.md: " + "; ".join(errors), errors=errors)


class HubHandler(BaseHTTPRequestHandler):
    """Dispatches each request to a method named after its route; errors become Hub-style error responses."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects; every response has a Content-Length
    server: HubHTTPServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        """Quiet: requests are recorded in ``server.requests`` instead of printed."""

    # -- plumbing ------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.server.requests.append(f"{method} {url.path}")
        body = self._read_body()
        try:
            with self.server.store.lock:
                self._route(method, url.path, body)
        except HubError as error:
            payload = {
                "error": error.message,
                "errors": [{"message": m} for m in error.errors],
                **error.extra,
            }
            self._send_json(payload, error.status, error_code=error.code)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            # A request this server cannot parse (bad JSON, missing fields).
            self._send_json({"error": f"Bad request: {error!r}"}, 400)

    def _route(self, method: str, path: str, body: bytes) -> None:
        if method in ("GET", "HEAD") and (match := RESOLVE.fullmatch(path)):
            self.resolve(unquote(match["repo"]), unquote(match["rev"]), unquote(match["path"]), method)
            return
        for route_method, pattern, handler in API_ROUTES:
            if route_method == method and (match := pattern.fullmatch(path)):
                params = {
                    name: unquote(value) for name, value in match.groupdict().items() if value is not None
                }
                getattr(self, handler)(body, **params)
                return
        raise HubError(404, f"This local Hub does not implement {method} {path}")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _require_token(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def _send(self, status: int, body: bytes, headers: dict[str, str], include_body: bool = True) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if include_body:
            self.wfile.write(body)

    def _send_json(self, payload, status: int = 200, error_code: str | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if error_code:
            headers["X-Error-Code"] = error_code
        if status >= 400:
            headers["X-Error-Message"] = payload.get("error", "")
        self._send(status, json.dumps(payload).encode(), headers, include_body=self.command != "HEAD")

    def _url(self, path: str) -> str:
        return f"{self.server.endpoint}/{path.lstrip('/')}"

    # -- API -------------------------------------------------------------------------------------------------

    def whoami(self, body: bytes) -> None:
        self._require_token()
        self._send_json({"type": "user", "name": USER, "fullname": "Local Test User", "orgs": [], "auth": {}})

    def create_repo(self, body: bytes) -> None:
        self._require_token()
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") not in (None, "model"):
            raise HubError(400, "This local Hub only hosts model repos")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        self.server.store.create(repo_id, self._url(repo_id))
        self._send_json({"url": self._url(repo_id), "name": repo_id, "id": repo_id})

    def validate_yaml(self, body: bytes) -> None:
        validate_readme(json.loads(body).get("content", "").encode())
        self._send_json({"errors": [], "warnings": []})

    def preupload(self, body: bytes, repo: str, rev: str) -> None:
        self._require_token()
        files = self.server.store.commit(repo, rev).files
        answers = [
            {
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_id(files[item["path"]]) if item["path"] in files else None,
            }
            for item in json.loads(body)["files"]
        ]
        self._send_json({"files": answers, "commitOid": self.server.store.commit(repo, rev).oid})

    def commit(self, body: bytes, repo: str, rev: str) -> None:
        self._require_token()
        store_repo = self.server.store.repo(repo)
        files = dict(self.server.store.commit(repo, rev).files)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != store_repo.branches.get(rev):
            raise HubError(412, "A commit has happened since parentCommit")
        for line in lines[1:]:
            apply_operation(files, line["key"], line["value"])
        validate_readme(files.get("README.md"))  # the Hub refuses commits whose card metadata is invalid
        commit = store_repo.add_commit(rev, header.get("summary", ""), files)
        self._send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": self._url(f"{repo}/commit/{commit.oid}"),
                "pullRequestUrl": None,
                "hookOutput": "",
            }
        )

    def repo_info(self, body: bytes, repo: str, rev: str = DEFAULT_BRANCH) -> None:
        commit = self.server.store.commit(repo, rev)
        metadata = card_metadata(commit.files.get("README.md"))
        created = min(c.date for c in self.server.store.repo(repo).commits.values())
        info = {
            "_id": hashlib.md5(repo.encode()).hexdigest()[:24],
            "id": repo,
            "modelId": repo,
            "author": repo.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": created,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": metadata.get("tags") or [],
            "pipeline_tag": metadata.get("pipeline_tag") or None,
            "library_name": metadata.get("library_name") or None,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }
        self._send_json(info)

    def tree(self, body: bytes, repo: str, rev: str, path: str = "") -> None:
        files = self.server.store.commit(repo, rev).files
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        if prefix and not any(name.startswith(prefix) for name in files):
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        entries, folders = [], set()
        for name in sorted(files):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/", 1)[0])
                continue
            entries.append(file_entry(name, files[name]))
        entries += [
            {"type": "directory", "oid": "0" * 40, "size": 0, "path": folder} for folder in sorted(folders)
        ]
        self._send_json(entries)

    def paths_info(self, body: bytes, repo: str, rev: str) -> None:
        files = self.server.store.commit(repo, rev).files
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        entries = []
        for path in paths:
            if path in files:
                entries.append(file_entry(path, files[path]))
            elif any(name.startswith(path.rstrip("/") + "/") for name in files):
                entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": path})
        self._send_json(entries)

    # -- files -----------------------------------------------------------------------------------------------

    def resolve(self, repo: str, rev: str, path: str, method: str) -> None:
        commit = self.server.store.commit(repo, rev)
        if path not in commit.files:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        content = commit.files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_id(content)}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
        }
        self._send(200, content, headers, include_body=method == "GET")


def file_entry(path: str, content: bytes) -> dict:
    """A tree / paths-info entry for a regular (non-LFS) file."""
    return {"type": "file", "oid": git_blob_id(content), "size": len(content), "path": path}


def apply_operation(files: dict[str, bytes], key: str, value: dict) -> None:
    """Applies one NDJSON commit operation to the file tree ``files`` (path -> content)."""
    path = value["path"]
    if key == "file":
        if value.get("encoding", "base64") != "base64":
            raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
        files[path] = base64.b64decode(value["content"])
    elif key == "deletedFile":
        if files.pop(path, None) is None:
            raise HubError(404, f"Cannot delete {path}: no such file", "EntryNotFound")
    elif key == "deletedFolder":
        prefix = path.rstrip("/") + "/"
        for name in [name for name in files if name.startswith(prefix)]:
            del files[name]
    else:
        raise HubError(400, f"This local Hub takes files inline only; got a {key!r} operation")


class HubHTTPServer(ThreadingHTTPServer):
    """The threaded HTTP server holding the store and the request log."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int]):
        super().__init__(address, HubHandler)
        self.store = HubStore()
        self.requests: list[str] = []

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class HubServer:
    """Runs a local Hub on a free port in a background thread: ``with HubServer() as hub: ...``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.httpd = HubHTTPServer((host, port))
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="local-hub", daemon=True)

    @property
    def endpoint(self) -> str:
        return self.httpd.endpoint

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    @property
    def store(self) -> HubStore:
        return self.httpd.store

    def client_env(self, hf_home: str) -> dict[str, str]:
        """Environment variables that point a fresh ``huggingface_hub`` process at this server."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_TOKEN": TOKEN,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": hf_home,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    port = parser.parse_args().port
    server = HubServer(port=port).start()
    print(f"Local Hub at {server.endpoint}; HF_ENDPOINT={server.endpoint} HF_TOKEN={TOKEN}")
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()
