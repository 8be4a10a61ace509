"""An independent renderer: three.js (WebGL2) in headless Chromium.

difflod's result is judged where users open it. This module renders glTF/GLB
files with three.js's own `GLTFLoader` and `MeshStandardMaterial` /
`MeshPhysicalMaterial` shaders — the normals, tangents, normal maps and
material channels as any three.js application shows them — under difflod's
evaluation cameras and point light, and returns the pictures as tensors, so
`difflod eval --renderer threejs` scores the exported files with the same
metrics as difflod's own renderer.

How: a page (threejs_page.js) is served from a loopback HTTP server that this
module runs on 127.0.0.1 for the duration of one call; Chromium (headless,
WebGL2 through SwiftShader on machines without a GPU) loads it, fetches
`job.json` (models, views, light), renders each view into a float render
target (linear radiance, no tone mapping, no output colour conversion, 4x
MSAA by default) and POSTs the pixels back. Nothing is read from or sent to
any other host.

Scene: one PointLight of intensity `light_power` with no distance falloff
(decay 0), as difflod's light; no ambient or environment light, so glTF
occlusion has no effect here either; black transparent background. A view's
camera is split from difflod's `mvp` as P (the evaluation projection) and
V = P^-1 mvp, which is rigid for difflod's views. Each model is placed by a
`[4,4]` matrix (the evaluation's normalization of the reference).

Finding the tools: Chromium from `$DIFFLOD_CHROMIUM`, else `chromium`,
`chromium-browser`, `google-chrome` on PATH; the npm package `three` from
`$DIFFLOD_THREE_DIR`, else `./node_modules/three`, `.ci/node/node_modules/three`
in the current folder, then `npm root -g`. Missing tools raise
`RendererUnavailable` saying how to install them.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import torch

from difflod.errors import DiffLodError

__all__ = ["RendererFailed", "RendererUnavailable", "ThreeJs", "find_threejs", "render_gltf"]

_PAGE = Path(__file__).with_name("threejs_page.js")

#: seconds without any message from the page before a call gives up
PAGE_TIMEOUT = 300.0


class RendererUnavailable(DiffLodError):
    """The independent renderer's tools (Chromium, the npm package three) are missing."""


class RendererFailed(DiffLodError):
    """three.js could not render a file (its error is in the message), or Chromium died."""


@dataclass(frozen=True)
class ThreeJs:
    """Where the tools are: the Chromium executable and the `three` package folder."""

    chromium: str
    three_dir: Path


def _three_candidates() -> Iterator[Path]:
    """Folders that may hold the `three` package, in order; `npm root -g` is asked
    only when none of the local ones is it."""
    env = os.environ.get("DIFFLOD_THREE_DIR")
    if env:
        yield Path(env)
        return
    yield Path.cwd() / "node_modules" / "three"
    yield Path.cwd() / ".ci" / "node" / "node_modules" / "three"
    yield Path(__file__).resolve().parents[2] / ".ci" / "node" / "node_modules" / "three"
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True,
                                  timeout=30, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            root = ""
        if root:
            yield Path(root) / "three"


def find_threejs() -> ThreeJs:
    """Locate Chromium and three.js (see the module docstring).

    Raises:
        RendererUnavailable: naming what is missing and how to install it.
    """
    names = [os.environ["DIFFLOD_CHROMIUM"]] if os.environ.get("DIFFLOD_CHROMIUM") else \
        ["chromium", "chromium-browser", "google-chrome"]
    chromium = next((p for p in (shutil.which(n) for n in names) if p), None)
    if chromium is None:
        raise RendererUnavailable(
            "renderer threejs: no Chromium found (looked for " + ", ".join(names)
            + "); install it (Debian: apt-get install chromium) or set DIFFLOD_CHROMIUM")
    for cand in _three_candidates():
        if (cand / "build" / "three.module.js").is_file() and \
                (cand / "examples" / "jsm" / "loaders" / "GLTFLoader.js").is_file():
            return ThreeJs(chromium=chromium, three_dir=cand)
    raise RendererUnavailable(
        "renderer threejs: the npm package 'three' was not found; run 'npm install three' "
        "in this folder or set DIFFLOD_THREE_DIR to its folder")


class _Session:
    """The state one render call shares with its HTTP handler threads."""

    def __init__(self, root: Path, three_dir: Path, n_models: int, n_views: int, res: int):
        self.root, self.three_dir, self.res = root, three_dir, res
        self.pixels = np.zeros((n_models, n_views, res, res, 4), np.float32)
        self.received = np.zeros((n_models, n_views), bool)
        self.error: str | None = None
        self.finished = threading.Event()
        self.last_message = time.monotonic()


def _handler(session: _Session) -> type[http.server.BaseHTTPRequestHandler]:
    page = _PAGE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes = b"", kind: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/page.js":
                return self._send(200, page, "text/javascript")
            if path.startswith("/three/"):
                base, rel = session.three_dir.resolve(), path[len("/three/"):]
                kind = "text/javascript"
            else:
                base, rel = session.root.resolve(), path.lstrip("/")
                kind = {".html": "text/html", ".json": "application/json"}.get(
                    Path(rel).suffix, "application/octet-stream")
            parts = Path(rel).parts
            file = base.joinpath(*parts)
            if not parts or ".." in parts or not file.is_file():  # links placed by us only
                return self._send(404)
            return self._send(200, file.read_bytes(), kind)

        def do_POST(self) -> None:
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            session.last_message = time.monotonic()
            if url.path == "/result":
                q = parse_qs(url.query)
                m, v = int(q["model"][0]), int(q["view"][0])
                res = session.res
                session.pixels[m, v] = np.frombuffer(body, np.float32).reshape(res, res, 4)
                session.received[m, v] = True
            elif url.path == "/error":
                session.error = body.decode("utf-8", "replace")
                session.finished.set()
            elif url.path == "/done":
                session.finished.set()
            self._send(200)

    return Handler


_HTML = """<!doctype html><html><head><meta charset="utf-8">
<script type="importmap">{"imports": {"three": "/three/build/three.module.js",
"three/addons/": "/three/examples/jsm/"}}</script></head>
<body><script type="module" src="/page.js"></script></body></html>
"""


def _split_mvp(mvp: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """V = P^-1 mvp `[4,4]` float64, checked to be a rigid transform."""
    view = np.linalg.solve(proj, mvp)
    rot = view[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or \
            not np.allclose(view[3], [0, 0, 0, 1], atol=1e-6):
        raise ValueError("views: mvp is not projection @ rigid view for the given projection")
    return view


def render_gltf(models: Sequence[tuple[Path, np.ndarray]], mvp: torch.Tensor,
                proj: torch.Tensor, light_pos: torch.Tensor, light_power: float, res: int,
                *, samples: int = 4, tools: ThreeJs | None = None
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Render glTF/GLB files with three.js under difflod's views.

    Args:
        models: (file, `[4,4]` model matrix) per model; the matrix places the
            file's scene (row-major, applied to column vectors).
        mvp: `[B,4,4]` view-projection matrices (difflod's Views.mvp).
        proj: `[4,4]` the projection the views were made with.
        light_pos: `[B,3]` point light positions; light_power its intensity.
        res: square image size; samples: MSAA samples of the render target.
        tools: where Chromium and three.js are (found when None).
    Returns:
        Per model, (linear colour `[B,res,res,3]`, alpha `[B,res,res,1]`) float32
        CPU tensors, row 0 = bottom (difflod's raster order).
    Raises:
        RendererUnavailable: the tools are missing.
        RendererFailed: the page failed (three.js's error is in the message, e.g.
            a file it cannot read), or Chromium stopped answering for
            PAGE_TIMEOUT seconds.
    """
    tools = tools or find_threejs()
    p = proj.detach().double().cpu().numpy()
    mvps = mvp.detach().double().cpu().numpy()
    lights = light_pos.detach().double().cpu().numpy()
    with tempfile.TemporaryDirectory(prefix="difflod-threejs-") as tmp:
        root = Path(tmp)
        job_models = []
        for k, (file, matrix) in enumerate(models):
            file = Path(file)
            name = f"model{k}{file.suffix.lower()}"
            if file.suffix.lower() == ".gltf":  # its .bin and images sit beside it
                (root / f"m{k}").symlink_to(file.resolve().parent, target_is_directory=True)
                name = f"m{k}/{file.name}"
            else:
                (root / name).symlink_to(file.resolve())
            job_models.append({"url": name,
                               "matrix": np.asarray(matrix, np.float64).reshape(-1).tolist()})
        views = [{"proj": p.reshape(-1).tolist(), "view": _split_mvp(m, p).reshape(-1).tolist(),
                  "light": lt.tolist()} for m, lt in zip(mvps, lights)]
        job = {"res": int(res), "samples": int(samples), "light_power": float(light_power),
               "models": job_models, "views": views}
        (root / "job.json").write_text(json.dumps(job))
        (root / "index.html").write_text(_HTML)
        session = _Session(root, tools.three_dir, len(models), len(views), int(res))
        _run_page(tools, session, root)
    out = []
    for k in range(len(models)):
        px = torch.from_numpy(session.pixels[k].copy())
        out.append((px[..., :3].contiguous(), px[..., 3:].clamp(0.0, 1.0).contiguous()))
    return out


def _run_page(tools: ThreeJs, session: _Session, root: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(session))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    log = root / "chromium.log"
    cmd = [tools.chromium, "--headless=new", "--no-sandbox", "--use-angle=swiftshader",
           "--enable-unsafe-swiftshader", "--no-first-run", "--disable-extensions",
           "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
           f"--user-data-dir={root / 'profile'}", url]
    try:
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                    stdin=subprocess.DEVNULL)
            try:
                while not session.finished.wait(0.5):
                    if proc.poll() is not None:
                        raise RendererFailed(f"three.js renderer: Chromium exited with code "
                                           f"{proc.returncode}: {_tail(log)}")
                    if time.monotonic() - session.last_message > PAGE_TIMEOUT:
                        raise RendererFailed(f"three.js renderer: no answer from the page for "
                                           f"{PAGE_TIMEOUT:.0f} s: {_tail(log)}")
            finally:
                proc.kill()
                proc.wait()
    finally:
        server.shutdown()
        server.server_close()
    if session.error is not None:
        raise RendererFailed("three.js renderer: the page failed: "
                             + " ".join(session.error.split())[:500])
    if not session.received.all():
        raise RendererFailed("three.js renderer: the page finished without every view")


def _tail(log: Path, lines: int = 5) -> str:
    text = log.read_text("utf-8", "replace").strip().splitlines()
    keep = [t for t in text if "dbus" not in t.lower()]
    return " | ".join(keep[-lines:]) or "(no output)"
