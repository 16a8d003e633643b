"""A local stand-in for the HuggingFace hub: an HTTP server on 127.0.0.1
that answers the ``resolve`` URLs ``huggingface_hub`` downloads files from
(``HEAD`` for the metadata, ``GET`` for the bytes), with the hub's error
codes for a missing repository, revision or file.

    with LocalHub({'microsoft/cvt-13': {'model.safetensors': path}}) as hub:
        os.environ['HF_ENDPOINT'] = hub.endpoint

and the random ``transformers`` CvT models whose files it serves.
"""
import hashlib
import http.server
import os.path as osp
import re
import threading
from typing import Dict

import torch

COMMIT = '0123456789abcdef0123456789abcdef01234567'


class LocalHub:
    """Serves ``{repo_id: {filename: local path}}`` at revision ``main``."""

    def __init__(self, repos: Dict[str, Dict[str, str]]):
        self.repos = repos
        self.requests = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def log_message(self, *args):  # quiet
                pass

            def _answer(self, body: bool):
                hub.requests.append((self.command, self.path))
                m = re.match(r'^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$',
                             self.path)
                if m is None or m[1] not in hub.repos:
                    return self._error('RepoNotFound')
                if m[2] not in ('main', COMMIT):
                    return self._error('RevisionNotFound')
                path = hub.repos[m[1]].get(m[3])
                if path is None:
                    return self._error('EntryNotFound')
                with open(path, 'rb') as f:
                    data = f.read()
                self.send_response(200)
                self.send_header('X-Repo-Commit', COMMIT)
                self.send_header('ETag',
                                 f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _error(self, code: str):
                self.send_response(404)
                self.send_header('X-Error-Code', code)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.endpoint = f'http://127.0.0.1:{self.server.server_address[1]}'
        self.thread = threading.Thread(
            target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> 'LocalHub':
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def downloads(self, filename: str) -> int:
        """How many times ``filename`` was downloaded (GET)."""
        return sum(1 for method, path in self.requests
                   if method == 'GET' and osp.basename(path) == filename)


def hf_cvt_model(seed: int, **config):
    """A seeded random ``transformers`` CvT classifier (``CvtConfig()`` is
    CvT-13) with non-trivial BatchNorm statistics, so that loading them
    shows: what the hub's ``microsoft/cvt-*`` files hold, in layout."""
    import transformers
    torch.manual_seed(seed)
    model = transformers.CvtForImageClassification(
        transformers.CvtConfig(**config)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + .5)
    return model
