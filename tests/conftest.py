"""Shared fixtures: the real MNIST mirror, a loopback HTTP server, stage runs in a folder,
the small study trained once per session (by one of its worker processes, for all of them);
time limits per tier, and no process left behind."""

from __future__ import annotations

import functools
import gc
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from filelock import FileLock

from fakedata import checksums, write_first_images
from initstudy.datasets import prepare_dataset
from initstudy.download import MIRROR_ENV
from initstudy.numerics import pin_isa
from workspace import ROOT, Workspace, command_env, update_params

os.environ.setdefault("KERAS_BACKEND", "jax")
pin_isa("AVX")  # the default of train.cpu_isa, for what the tests train in this process

# The images every small study trains and validates on: the first of real MNIST's. Their mirror
# (`small_mnist`) holds only these, so that each study downloads, prepares, caches, checks out
# and hashes 5 MB of data rather than the whole 230 MB; its runs are the same bits either way.
SMALL_IMAGES = {"train_samples": 1000, "val_samples": 500}

# The small study every pipeline test starts from.
SMALL_STUDY = dict(
    data=SMALL_IMAGES,
    study={"initializers": ["zeros", "he_normal"], "seeds": [0, 1]},
    train={"epochs": 1},
    analysis={"reference": "he_normal"},
)


# Time limits (pytest-timeout): pyproject's `timeout` for a test that needs nothing of these,
# the largest budget of its tiers for one that does (an explicit @pytest.mark.timeout wins).
# Setup and teardown count: the first test that needs the session's small study trains it
# (and a test of another worker that needs it meanwhile waits for it).
TIER_TIMEOUTS = {"training": 600, "browser": 300, "servers": 900, "emulated": 900}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    weight: dict[Path, int] = {}
    for item in items:
        budgets = [seconds for tier, seconds in TIER_TIMEOUTS.items() if item.get_closest_marker(tier)]
        if budgets and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(max(budgets)))
        weight[item.path] = weight.get(item.path, 0) + max(budgets, default=0)
    # pytest-xdist (--dist loadfile --no-loadscope-reorder: else it sorts the files by their
    # number of tests) hands the files out in this order as its workers come free: those with
    # the most tier time first, the quick ones last, to even out the ends.
    items.sort(key=lambda item: -weight[item.path])


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the collector off what the test modules imported (JAX, Keras, TensorFlow, pandas,
    matplotlib: some 440,000 objects that live as long as the process): each full
    collection, Keras' clear_session's included, would walk them all again."""
    gc.collect()
    gc.freeze()


# Every process the suite starts inherits this mark in its environment, daemons that leave
# their parent included: at the end, none of them may still run.
SUITE_MARK = "INITSTUDY_TEST_SUITE"


def pytest_configure(config: pytest.Config) -> None:
    os.environ[SUITE_MARK] = str(os.getpid())


def suite_processes() -> dict[int, str]:
    """The processes of this run of the suite still alive (zombies aside): the descendants of
    this one, and every process whose environment holds its mark; each with its command line."""
    me, mark = os.getpid(), f"{SUITE_MARK}={os.getpid()}".encode()
    parents, marked, commands = {}, set(), {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            state, ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            commands[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                marked.add(int(proc.name))
        except (OSError, ValueError):
            continue
        if state != "Z":
            parents[int(proc.name)] = int(ppid)
    found, frontier = set(), {me}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {pid: commands[pid] for pid in sorted(found | (marked & set(parents)))}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process it started still runs (after a few seconds' grace), and end them."""
    deadline = time.monotonic() + 10
    while (left := suite_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not left:
        return
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    lines = "\n".join(f"  {pid}: {command}" for pid, command in left.items())
    sys.stderr.write(f"\nthe suite left {len(left)} process(es) running (now killed):\n{lines}\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


STARTED: list[subprocess.Popen] = []


def tracked(process: subprocess.Popen) -> subprocess.Popen:
    """`process`, started in a process group of its own (start_new_session), killed with its
    group if the test leaves it running (when it fails half-way or runs out of time)."""
    STARTED.append(process)
    return process


def start(command: list[str], cwd: Path, env: dict[str, str], log: Path, **popen: object) -> subprocess.Popen:
    """Start `command` in its own process group, its output to `log` (tracked)."""
    with log.open("w") as out:
        return tracked(subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, **popen))


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Kill the process groups that the test started (`tracked`) and left running."""
    yield
    for process in STARTED:
        if process.poll() is None:
            kill_group(process)
    STARTED.clear()


def session_folder(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str) -> Path:
    """A folder for the whole test session: with pytest-xdist, the one its worker processes
    share (`name` beside their own temporary folders); without, one of this process's own."""
    if worker_id == "master":
        return tmp_path_factory.mktemp(name)
    folder = tmp_path_factory.getbasetemp().parent / name
    folder.mkdir(exist_ok=True)
    return folder


def built_once(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str, folder: Path,
               build: Callable[[], Any]) -> Any:
    """Build `folder` once per test session: `build()`, whose result (JSON) is returned.

    Without pytest-xdist this process builds it. With it, the workers share it: the first to
    come builds it while it holds a file lock beside their temporary folders, and records its
    result in `name`.json when it is done; the others wait for the lock and read that. A
    worker that failed half-way (a time limit) leaves no record: the next one builds afresh.
    """
    if worker_id == "master":
        return build()
    shared = tmp_path_factory.getbasetemp().parent
    done = shared / f"{name}.json"
    with FileLock(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            done.write_text(json.dumps(build()))
        return json.loads(done.read_text())


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> None:
    """One XLA compilation cache for the session's stages, all its workers' (JAX's cache is
    safe for concurrent processes), apart from the user's."""
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(session_folder(tmp_path_factory, worker_id, "compiled"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the four official MNIST files (INITSTUDY_DATA_MIRROR or ../shared).

    Without either, the tests that need real MNIST are skipped; a mirror that is named
    but missing (as CI names one) fails them, so a broken setup cannot pass as green.
    """
    named = os.environ.get(MIRROR_ENV)
    path = Path(named or ROOT.parent / "shared/data/mnist-idx")
    if not (path / "train-images-idx3-ubyte.gz").exists():
        (pytest.fail if named else pytest.skip)(f"no MNIST mirror at {path}; set {MIRROR_ENV}")
    return path


@pytest.fixture(scope="session")
def mnist_prepared(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MNIST files as the `prepare` stage leaves them: a .npy file per array."""
    folder = tmp_path_factory.mktemp("prepared") / "mnist"
    prepare_dataset("mnist", mnist_dir, folder)
    return folder


@pytest.fixture(scope="session")
def small_mnist(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A mirror of the four MNIST files holding only the small studies' images (SMALL_IMAGES),
    in their formats; a study that uses it takes its checksums from `small_data`."""
    folder = session_folder(tmp_path_factory, worker_id, "small-mnist")
    built_once(tmp_path_factory, worker_id, "small-mnist", folder,
               lambda: write_first_images(mnist_dir, folder, SMALL_IMAGES["train_samples"],
                                                  SMALL_IMAGES["val_samples"]))
    return folder


def small_data(mirror: Path, **params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Params for Workspace.create (e.g. SMALL_STUDY) with `data.checksums` for the files of
    `mirror` (small_mnist): the published checksums are those of the whole files."""
    return {**params, "data": {**params.get("data", {}), "checksums": checksums(mirror)}}


def kill_group(process: subprocess.Popen) -> None:
    """Kill the process group that `process` leads (started with start_new_session), and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


# The small study every pipeline test starts from: committed (`origin`), and trained once per
# session (`one_machine`), each built by one worker process for all of them (built_once);
# a test that changes it works on a copy (Workspace.copy), or a clone.
@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory, worker_id: str, small_mnist: Path) -> Workspace:
    """The team's repository: the small study committed, nothing trained. Read only: clone it."""
    path = session_folder(tmp_path_factory, worker_id, "small-study") / "origin"

    def build() -> None:
        Workspace.create(path, mirror=str(small_mnist), **small_data(small_mnist, **SMALL_STUDY)).commit("small study")

    built_once(tmp_path_factory, worker_id, "small-study-origin", path, build)
    return Workspace(path, mirror=str(small_mnist))


@pytest.fixture(scope="session")
def small_study(origin: Workspace, tmp_path_factory: pytest.TempPathFactory, worker_id: str
                ) -> tuple[Workspace, set[str]]:
    """The small study reproduced by one `dvc repro` in a clone of `origin`, and the stages that ran."""
    path = origin.path.parent / "one-machine"
    ran = built_once(tmp_path_factory, worker_id, "small-study-one-machine", path,
                     lambda: sorted(origin.clone(path).repro()))
    workspace = Workspace(path)
    workspace.env = dict(origin.env)  # as origin.clone leaves it
    return workspace, set(ran)


@pytest.fixture(scope="session")
def one_machine(small_study: tuple[Workspace, set[str]]) -> Workspace:
    """The trained small study: its results uncommitted, its runs in its cache. Read only: copy it to change it."""
    workspace, ran = small_study
    assert {f"train@mlp-{init}-{seed}" for init in ("zeros", "he_normal") for seed in (0, 1)} <= ran
    return workspace


BROWSER_ENV = "INITSTUDY_BROWSER"


@pytest.fixture(scope="session")
def render_page():
    """Open a local page in headless Chromium with every network host unresolvable; return
    the DOM once its scripts have run. Chromium is INITSTUDY_BROWSER or `chromium` on PATH;
    without either the browser tests are skipped, and a named browser that is missing fails them.
    """
    named = os.environ.get(BROWSER_ENV)
    browser = shutil.which(named or "chromium")
    if not browser:
        (pytest.fail if named else pytest.skip)(f"no Chromium at {named or 'chromium'}; set {BROWSER_ENV}")

    def render(page: Path) -> str:
        process = subprocess.Popen(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--virtual-time-budget=20000", "--dump-dom", page.resolve().as_uri()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=120)
        finally:  # the browser's own processes too, on any end
            kill_group(process)
        assert process.returncode == 0, stderr
        return stdout

    return render


@pytest.fixture(scope="session")
def layout_boxes(render_page):
    """Open a local page in headless Chromium in a window `width` pixels wide, its scripts
    disabled unless `scripts`, through the DevTools protocol over a pipe (--dump-dom needs
    scripts); return the box (x, y, width, height) of each element matching a CSS selector
    once the page has loaded (and drawn, with scripts). (render_page: for its check that
    there is a browser.)"""
    browser = shutil.which(os.environ.get(BROWSER_ENV) or "chromium")

    def boxes(page: Path, selector: str, scripts: bool = False, width: int = 1400) -> list[tuple[float, ...]]:
        commands, replies = os.pipe(), os.pipe()

        def pipes_as_fds_3_and_4() -> None:  # where --remote-debugging-pipe reads and writes
            read, write = os.dup(commands[0]), os.dup(replies[1])
            os.dup2(read, 3)
            os.dup2(write, 4)

        process = subprocess.Popen(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--host-resolver-rules=MAP * ~NOTFOUND"],
            preexec_fn=pipes_as_fds_3_and_4, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        os.close(commands[0])
        os.close(replies[1])
        out, into = os.fdopen(replies[0], "rb"), os.fdopen(commands[1], "wb")
        pending, sent = b"", 0

        def message() -> dict:
            nonlocal pending
            while b"\0" not in pending:
                chunk = out.read1(65536)
                if not chunk:
                    raise RuntimeError("the browser closed its DevTools pipe")
                pending += chunk
            raw, pending = pending.split(b"\0", 1)
            return json.loads(raw)

        def call(method: str, session: str | None = None, **params: object) -> dict:
            nonlocal sent
            sent += 1
            into.write(json.dumps({"id": sent, "method": method, "params": params}
                                  | ({"sessionId": session} if session else {})).encode() + b"\0")
            into.flush()
            while (reply := message()).get("id") != sent:
                pass
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]

        try:
            target = call("Target.createTarget", url="about:blank")["targetId"]
            session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            call("Emulation.setScriptExecutionDisabled", session, value=not scripts)
            call("Emulation.setDeviceMetricsOverride", session, width=width, height=900, deviceScaleFactor=1,
                 mobile=False)
            call("Page.enable", session)
            call("Page.navigate", session, url=page.resolve().as_uri())
            while message().get("method") != "Page.loadEventFired":
                pass
            if scripts:  # Vega draws after the load event
                call("Runtime.evaluate", session, expression="new Promise(done => setTimeout(done, 3000))",
                     awaitPromise=True)
            root = call("DOM.getDocument", session, depth=-1)["root"]["nodeId"]
            found = []
            for node in call("DOM.querySelectorAll", session, nodeId=root, selector=selector)["nodeIds"]:
                quad = call("DOM.getBoxModel", session, nodeId=node)["model"]["border"]
                found.append((quad[0], quad[1], quad[2] - quad[0], quad[5] - quad[1]))
            return found
        finally:
            kill_group(process)
            out.close()
            into.close()

    return boxes


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder's files without logging each request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve():
    """Serve a folder over HTTP on 127.0.0.1 (with QuietHandler or a subclass); returns its base URL."""
    servers = []

    def start(directory: Path, handler: type[QuietHandler] = QuietHandler) -> str:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
        )
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def write_params(folder: Path, **sections: dict) -> Path:
    """A params.yaml in `folder`: the project's defaults with some keys changed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    update_params(folder / "params.yaml", **sections)
    return folder


def run_stage(cwd: Path, stage: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run src/stages/<stage>.py in `cwd` (where its params.yaml is), as DVC would, with `env` added."""
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / "stages" / f"{stage}.py"), *args],
        cwd=cwd, env={**command_env(cwd), **(env or {})}, capture_output=True, text=True, timeout=600,
    )
