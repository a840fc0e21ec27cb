#!/usr/bin/env python3
"""The plugin on a machine with no Rust toolchain: the real Claude Code CLI,
a throwaway HOME, no cargo and no rustup on PATH, the plugin installed the
way README says (``claude plugin marketplace add`` and ``claude plugin
install``), and the release archives served by a local HTTP server on
127.0.0.1 (``BRIDGE_HOST_DOWNLOAD_URL``). Each session talks to its own
local model stand-in (``model_stub.py``).

Checked, each from what happened (the server's log, the HOME's files, the
bridge directory, the stand-ins' request logs and the process table):

1. a tampered archive is refused: the session still starts, the model is
   told why, nothing is installed, and the archive's program never runs;
2. with the server down and nothing installed, the session starts, and the
   model is told exactly what to do;
3. the first session of a fresh HOME downloads the archive once (its two
   start-up hooks share one download), installs it under the plugin's data
   folder, and registers;
4. with the server stopped, a second session registers with the installed
   binary (no network after the install), asks the first a question, and
   gets its answer.

Prints one line per check ("ok" or "FAIL", computed), the figure "plugin
installed to first answered ask", and a last line "N passed, N failed".

Which archive: ``--dist DIR`` serves the release archives in DIR (made by
``.ci/release-archives``) with the plugin's committed ``release/SHA256SUMS``
unchanged, so it also checks that those sums are the archives'. Without it,
an archive of the same name and layout is made from ``$BRIDGE_HOST_BIN``
(the build under test) and the plugin's copy gets its sum.

Usage: python3 install.py [--dist DIR] [--keep] [--timeout S]
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    OFFLINE_ENV,
    REPO,
    SYSTEM_PATH,
    Claude,
    HarnessError,
    Stub,
    bridge_host_bin,
    workspace,
)
from model_stub import PLAIN_ANSWER  # noqa: E402
from scenario import Checks, idle, main_turns, wait_turn_result  # noqa: E402

TARGET = "x86_64-unknown-linux-musl"
MARKETPLACE = "session-bridge"
PLUGIN_ID = f"session-bridge@{MARKETPLACE}"


def version() -> str:
    return json.loads((REPO / "plugin/.claude-plugin/plugin.json").read_text())["version"]


def archive_name() -> str:
    return f"bridge-host-v{version()}-{TARGET}.tar.gz"


def make_archive(binary: Path, dest: Path, program: bytes | None = None) -> Path:
    """An archive laid out as .ci/release-archives lays it out, holding
    ``binary`` (or ``program``, for a tampered one)."""
    folder = archive_name().removesuffix(".tar.gz")
    path = dest / archive_name()
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        data = program if program is not None else binary.read_bytes()
        info = tarfile.TarInfo(f"{folder}/bridge-host")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return path


class Releases:
    """A local HTTP server for the release archives, on 127.0.0.1, with a
    log of what was asked."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.stopped = False
        self.log: list[tuple[str, int]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                file = owner.root / self.path.lstrip("/").split("?")[0]
                if file.is_file() and owner.root in file.resolve().parents:
                    body = file.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    owner.log.append((self.path, 200))
                else:
                    self.send_error(404)
                    owner.log.append((self.path, 404))

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v{version()}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()

    def gets(self) -> list[str]:
        return [path for path, status in self.log if status == 200]


def marketplace(root: Path, sums: str | None) -> Path:
    """A copy of the repository's marketplace: its plugin, with
    ``release/SHA256SUMS`` replaced by ``sums`` when given. A copy, so that
    the launcher cannot find the checkout's target/ beside it."""
    market = root / "marketplace"
    (market / ".claude-plugin").mkdir(parents=True)
    shutil.copy(REPO / ".claude-plugin/marketplace.json", market / ".claude-plugin")
    shutil.copytree(REPO / "plugin", market / "plugin",
                    ignore=shutil.ignore_patterns("installed-by-*"))
    if sums is not None:
        (market / "plugin/release/SHA256SUMS").write_text(sums)
    return market


class FreshClaude(Claude):
    """Claude Code as a user without Rust runs it: the plugin installed in
    its HOME (not --plugin-dir), no BRIDGE_HOST_BIN, the default bridge
    directory and cache, and the download URL pointing at the local
    server."""

    def __init__(self, *args, download_url: str, **kw):
        super().__init__(*args, plugin_dir=None, **kw)
        self.download_url = download_url

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("BRIDGE_HOST_BIN", None)
        env["BRIDGE_HOST_DOWNLOAD_URL"] = self.download_url
        return env


def prepare_home(home: Path, projects: list[Path], market: Path, claude: Claude) -> None:
    """Trust every project in one HOME, then install the plugin with the
    real CLI, as README says."""
    state_file = home / ".claude.json"
    state = json.loads(state_file.read_text())
    template = next(iter(state["projects"].values()))
    state["projects"] = {str(p.resolve()): dict(template) for p in projects}
    state_file.write_text(json.dumps(state, indent=2))
    env = {"PATH": SYSTEM_PATH, "HOME": str(home), **OFFLINE_ENV,
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    for args in (["plugin", "marketplace", "add", str(market)], ["plugin", "install", PLUGIN_ID]):
        done = subprocess.run([str(claude.binary), *args], env=env, capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            raise HarnessError(f"claude {' '.join(args)}: {done.stdout}{done.stderr}")


def data_folder(home: Path) -> Path:
    return home / ".claude/plugins/data" / re.sub(r"[^A-Za-z0-9_-]", "-", PLUGIN_ID)


def installed_binaries(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("bridge-host") if p.is_file() and "cache" not in p.parts)


def sessions_of(bridge_dir: Path) -> dict[str, str]:
    """session ID → project, read from the bridge directory's files."""
    found = {}
    for meta in sorted((bridge_dir / "sessions").glob("*/manifest.json")):
        try:
            found[meta.parent.name] = json.loads(meta.read_text()).get("projectPath", "")
        except (OSError, ValueError):
            pass
    return found


def wait(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return condition()


def context_text(dump_dir: Path) -> str:
    """Everything the model was sent, as text."""
    return "\n".join(p.read_text(errors="replace") for p in sorted(dump_dir.glob("*.json")))


def first_prompt(cc: Claude, stub: Stub, t: float) -> None:
    before = len(main_turns(stub))
    cc.type_line("hello")
    cc.wait_for(lambda: len(main_turns(stub)) > before, t, "the model's first turn")


def scenario(args: argparse.Namespace) -> int:
    checks = Checks()
    t = args.timeout
    no_rust = [tool for tool in ("cargo", "rustup", "rustc")
               if shutil.which(tool, path=SYSTEM_PATH)]
    if no_rust:
        raise HarnessError(f"{', '.join(no_rust)} is on the sessions' PATH ({SYSTEM_PATH})")
    with workspace(args.keep, prefix="install-") as root:
        served = root / "releases" / f"v{version()}"
        served.mkdir(parents=True)
        if args.dist:
            for file in Path(args.dist).iterdir():
                shutil.copy(file, served)
            sums = None
            committed = (REPO / "plugin/release/SHA256SUMS").read_text()
            dist_sums = (Path(args.dist) / "SHA256SUMS").read_text()
            line = [l for l in dist_sums.splitlines() if l.endswith(archive_name())]
            checks.check("the plugin's committed SHA256SUMS has this archive's sum",
                         bool(line) and line[0] in committed.splitlines(), f"{line} in {committed!r}")
        else:
            binary = bridge_host_bin()
            if binary is None:
                raise HarnessError("no bridge-host to pack: set BRIDGE_HOST_BIN or build it")
            archive = make_archive(binary, served)
            sums = f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n"
        market = marketplace(root, sums)
        print(f"archive {archive_name()}, {(served / archive_name()).stat().st_size} bytes; work dir {root}",
              flush=True)

        # 1. A tampered archive is refused. The archive holds a program that
        #    leaves a file behind if anything runs it.
        home1 = root / "home-tampered"
        tampered_dir = root / "tampered" / f"v{version()}"
        tampered_dir.mkdir(parents=True)
        ran = root / "tampered-program-ran"
        make_archive(Path("/dev/null"), tampered_dir,
                     program=f"#!/bin/sh\ntouch '{ran}'\n".encode())
        tampered = Releases(tampered_dir.parent)
        project = root / "tampered-project"
        project.mkdir()
        try:
            with Stub(root / "tampered.jsonl", dump_dir=root / "tampered-requests") as stub:
                (root / "tampered-requests").mkdir(exist_ok=True)
                cc = FreshClaude(project, stub, home=home1, name="tampered", download_url=tampered.url)
                prepare_home(home1, [project], market, cc)
                with cc:
                    cc.wait_ready(t)
                    first_prompt(cc, stub, t)
                    told = context_text(root / "tampered-requests")
                    checks.check("a tampered archive is refused, and the model is told why",
                                 "refused " in told and "SHA-256" in told,
                                 re.search(r"refused [^\"\\]{0,120}", told).group(0) if "refused " in told else "no refusal in the model's context")
                    checks.check("nothing from the tampered archive is installed or run, and it is "
                                 "fetched once, not again by the hooks after each turn",
                                 not installed_binaries(home1) and not ran.exists()
                                 and len(tampered.gets()) == 1,
                                 f"installed {installed_binaries(home1)}, ran {ran.exists()}, served {tampered.gets()}")
                    idle(cc, t)
                    checks.check("the session with a tampered archive still runs", cc.alive())
                    cc.exit(t)
        finally:
            tampered.stop()

        # 2. No server, nothing installed: the session starts and the model is
        #    told what to do.
        home2 = root / "home-offline"
        project = root / "offline-project"
        project.mkdir()
        with Stub(root / "offline.jsonl", dump_dir=root / "offline-requests") as stub:
            (root / "offline-requests").mkdir(exist_ok=True)
            cc = FreshClaude(project, stub, home=home2, name="offline",
                             download_url="http://127.0.0.1:9/nothing-listens-here")
            prepare_home(home2, [project], market, cc)
            with cc:
                cc.wait_ready(t)
                first_prompt(cc, stub, t)
                told = context_text(root / "offline-requests")
                checks.check("offline with no binary: the session starts and the model is told what to do",
                             "could not install it: downloading " in told and "To fix it" in told
                             and cc.alive(), "the hint is in the model's context" if "To fix it" in told else "no hint")
                cc.exit(t)

        # 3 and 4. A fresh HOME: the library's session installs and registers;
        #    then, with the server stopped, the app's session asks it.
        home = root / "home"
        lib_dir, app_dir = root / "my-library", root / "my-app"
        lib_dir.mkdir()
        app_dir.mkdir()
        bridge_dir = home / ".claude" / "session-bridge"
        releases = Releases(served.parent)
        try:
            with Stub(root / "library.jsonl", persona="library") as lib_stub, \
                    Stub(root / "app.jsonl", persona="app") as app_stub:
                lib = FreshClaude(lib_dir, lib_stub, home=home, name="lib", download_url=releases.url)
                app = FreshClaude(app_dir, app_stub, home=home, name="app", download_url=releases.url)
                prepare_home(home, [lib_dir, app_dir], market, lib)
                installed_at = time.monotonic()
                with lib:
                    lib.wait_ready(t)
                    lib_id = wait(lambda: next((sid for sid, p in sessions_of(bridge_dir).items()
                                                if Path(p) == lib_dir.resolve()), None), t)
                    registered_in = time.monotonic() - installed_at
                    binaries = installed_binaries(home)
                    checks.check("the first session downloads the archive once and registers",
                                 lib_id is not None and releases.gets() == [f"/v{version()}/{archive_name()}"],
                                 f"session {lib_id} in {registered_in:.1f} s; served {releases.gets()}")
                    checks.check("the binary is installed under the plugin's data folder",
                                 len(binaries) == 1 and data_folder(home) in binaries[0].parents,
                                 f"{[str(b.relative_to(home)) for b in binaries]}")
                    releases.stop()
                    with app:
                        watched = [lib, app]
                        app.wait_ready(t)
                        app_id = wait(lambda: next((sid for sid, p in sessions_of(bridge_dir).items()
                                                    if Path(p) == app_dir.resolve()), None), t)
                        checks.check("with the server stopped, a second session registers with the installed binary",
                                     app_id is not None and installed_binaries(home) == binaries,
                                     f"session {app_id}")
                        app_turns = len(main_turns(app_stub))
                        app.type_line(f"/session-bridge:connect {lib_id}")
                        wait_turn_result(app_stub, app_turns, "Connected to 'my-library'", t, watched)
                        idle(app, t)
                        lib_turns = len(main_turns(lib_stub))
                        app_turns = len(main_turns(app_stub))
                        app.type_line("/session-bridge:ask what changed in v2?")
                        wait_turn_result(lib_stub, lib_turns, "Query from ", t, watched)
                        replied = wait_turn_result(app_stub, app_turns, PLAIN_ANSWER, t, watched)
                        answered_in = time.monotonic() - installed_at
                        checks.check("the second session's ask gets the first's answer",
                                     "Reply from " in replied["newest_user_text"]
                                     and PLAIN_ANSWER in replied["newest_user_text"])
                        print(f"figure: plugin installed to first answered ask: {answered_in:.1f} s "
                              f"(first session registered in {registered_in:.1f} s)", flush=True)
                        idle(app, t)
                        app.exit(t)
                    lib.exit(t)
        finally:
            releases.stop()
    return checks.summary()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", help="serve these release archives (.ci/release-archives)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args()
    try:
        return scenario(args)
    except HarnessError as e:
        print(f"install: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
