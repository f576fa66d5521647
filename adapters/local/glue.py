"""Local Glue: run a Glue PySpark script in this process, as ``glue:startJobRun.sync`` does on AWS.

:class:`LocalGlueRunner` is the task runner for
``arn:aws:states:::glue:startJobRun.sync``. It runs the job's script in one
local SparkSession per process (created on first use, reused by every run:
the JVM start is the slow part), in a worker thread, so the event loop stays
free and the execution stays busy - virtual time does not run ahead while
Spark works. ``s3://bucket/key`` in the job's arguments means the local
object store the runner was given. Register it like any runner::

    runner = LocalGlueRunner(objects, {"ceap-batch-heavy-etl": "glue_jobs/heavy_etl.py"})
    runners.register("glue:startJobRun", runner)

The result is what Step Functions returns for a ``.sync`` Glue task: the
GetJobRun ``JobRun`` (``Id``, ``JobName``, ``JobRunState``, ``StartedOn``,
``CompletedOn``, ``ExecutionTime``, ``Arguments``, ...; dates as epoch
milliseconds, as Step Functions serialises them). A run that fails ends the
task with error ``States.TaskFailed`` and, as cause, that ``JobRun`` as JSON
with ``"JobRunState": "FAILED"`` and its ``ErrorMessage`` - what AWS reports,
so the workflow's Retry and Catch apply unchanged. ``StartedOn`` and
``CompletedOn`` come from the engine's clock (virtual or real);
``ExecutionTime`` is the real seconds Spark took.

A script the runner can run defines ``main(argv, *, spark, storage)`` (see
``glue_jobs/heavy_etl.py``): ``argv`` is what Glue would pass
(``[script, "--JOB_NAME", name, "--JOB_RUN_ID", id, *arguments]``), ``spark``
the shared session, ``storage`` a :class:`LocalJobStorage`.

pyspark is an optional extra and needs Java. :func:`require_glue` says what
is missing (``pip install 'ceap[glue]'``, a Java runtime) before anything
starts; the CLI calls it before a batch run.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ceap_engine.errors import CeapError, InvalidKey, ObjectNotFound
from ceap_engine.ports import ObjectStore, ResourceInfo, TaskContext
from ceap_engine.runtime.tasks import TaskFailed

__all__ = [
    "GLUE_INSTALL_HINT",
    "LOCAL_SPARK_SETTINGS",
    "GlueUnavailable",
    "LocalGlueRunner",
    "LocalJobStorage",
    "find_java",
    "glue_problems",
    "glue_script_path",
    "local_spark_session",
    "require_glue",
    "stop_local_spark_session",
]

log = logging.getLogger("ceap.glue")

GLUE_INSTALL_HINT = "pip install 'ceap[glue]'"

#: Settings of the local session, for a small machine (2 cores): two local
#: threads, few shuffle partitions (Spark's default of 200 makes every small
#: aggregation pay for 200 tasks), no web UI, no progress bars, UTC.
LOCAL_SPARK_SETTINGS: dict[str, str] = {
    "spark.master": "local[2]",
    "spark.app.name": "ceap-local-glue",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
}

# Spark logs INFO/WARN chatter to the console by default; a local run shows
# errors only, so the CLI's progress lines stay readable.
_LOG4J2_PROPERTIES = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
# pyspark counts as a shell: Spark then sets the root level from the level of
# its gateway's logger (WARN unless configured) and says so on stderr.
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


class GlueUnavailable(CeapError):
    """Local Glue jobs cannot run here: pyspark or Java is missing. The message says what to install."""


# -- is Glue available? ---------------------------------------------------------


def find_java(environ: Mapping[str, str] | None = None, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The ``java`` executable pyspark will start: ``$JAVA_HOME/bin/java`` if JAVA_HOME is set, else ``java`` on PATH.

    >>> find_java({"JAVA_HOME": "/nowhere"}) is None
    True
    """
    environ = os.environ if environ is None else environ
    home = environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / ("java.exe" if os.name == "nt" else "java")
        return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    return which("java")


def _pyspark_installed() -> bool:
    return importlib.util.find_spec("pyspark") is not None


_java_checked: dict[str, str | None] = {}


def _java_runs(java: str) -> str | None:
    """``None`` if ``java -version`` works, else why not (cached per executable)."""
    if java not in _java_checked:
        try:
            done = subprocess.run([java, "-version"], capture_output=True, timeout=30, check=False)
            _java_checked[java] = None if done.returncode == 0 else (done.stderr or done.stdout).decode(errors="replace").strip()[:300]
        except (OSError, subprocess.TimeoutExpired) as err:
            _java_checked[java] = str(err)
    return _java_checked[java]


def glue_problems(
    *,
    pyspark_installed: Callable[[], bool] = _pyspark_installed,
    java: Callable[[], str | None] = find_java,
    java_runs: Callable[[str], str | None] = _java_runs,
) -> list[str]:
    """What stops local Glue jobs from running here, one sentence each; empty when nothing does.

    The checks are injectable, so a test can ask "what if pyspark were missing".

    >>> glue_problems(pyspark_installed=lambda: True, java=lambda: "/usr/bin/java", java_runs=lambda j: None)
    []
    """
    problems: list[str] = []
    if not pyspark_installed():
        problems.append(f"pyspark is not installed: the Glue stage runs on local Spark; install it with {GLUE_INSTALL_HINT}")
    executable = java()
    java_home = os.environ.get("JAVA_HOME")
    if executable is None and java_home and java is find_java:
        # pyspark starts $JAVA_HOME/bin/java, not the java on PATH: say which setting is wrong.
        problems.append(
            f"JAVA_HOME={java_home} has no runnable bin/java: pyspark starts the Java that JAVA_HOME names; "
            "point JAVA_HOME at a Java 17 (or 11) installation, or unset it to use the 'java' on PATH"
        )
    elif executable is None:
        problems.append(
            "no Java runtime found: pyspark needs Java 17 (or 11); install one (for example "
            "'apt-get install openjdk-17-jre-headless' or 'brew install openjdk@17') and put 'java' on PATH "
            "or set JAVA_HOME"
        )
    else:
        failure = java_runs(executable)
        if failure is not None:
            problems.append(f"Java at {executable} does not run ('java -version' failed: {failure}); fix or reinstall it")
    return problems


def require_glue(workflow: str | None = None, *, check: Callable[[], list[str]] = glue_problems) -> None:
    """Raise :class:`GlueUnavailable` naming what to install when local Glue jobs cannot run.

    Call it before starting a workflow with a Glue stage, so nothing half-runs.
    ``check`` lists the problems (default :func:`glue_problems`).

    Example::

        if any(stage.kind == "glue" for stage in spec.stages):
            require_glue(spec.name)
    """
    problems = check()
    if problems:
        what = f"workflow {workflow!r} has a Glue stage, which" if workflow else "a Glue job"
        raise GlueUnavailable(f"{what} cannot run on this machine:\n" + "\n".join(f"  - {p}" for p in problems))


# -- the one local SparkSession -------------------------------------------------

_session_lock = threading.Lock()
_session: Any = None
_scratch_root: str | None = None


def _remove_scratch() -> None:
    if _scratch_root is not None:
        shutil.rmtree(_scratch_root, ignore_errors=True)


def local_spark_session(settings: Mapping[str, str] | None = None) -> Any:
    """The process's local SparkSession, created on first call with :data:`LOCAL_SPARK_SETTINGS`.

    Later calls return the same session (``settings`` only apply to the
    first). Raises :class:`GlueUnavailable` when pyspark or Java is missing.

    Example::

        spark = local_spark_session()
        spark.range(3).count()
    """
    global _session, _scratch_root
    with _session_lock:
        if _session is not None and _session.sparkContext._jsc is not None:
            return _session
        require_glue()
        from pyspark.sql import SparkSession

        if _scratch_root is None:
            _scratch_root = tempfile.mkdtemp(prefix="ceap-spark-")
            atexit.register(_remove_scratch)
        log4j = Path(_scratch_root) / "log4j2.properties"
        log4j.write_text(_LOG4J2_PROPERTIES, encoding="utf-8")
        # Read by the JVM and the Python workers Spark starts: bind to loopback
        # (no "hostname resolves to a loopback address" warning, no firewall
        # prompt) and use this interpreter for workers.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        logging.getLogger("py4j").setLevel(logging.WARNING)
        builder = SparkSession.builder
        conf = {
            **LOCAL_SPARK_SETTINGS,
            "spark.sql.warehouse.dir": str(Path(_scratch_root) / "warehouse"),
            "spark.local.dir": str(Path(_scratch_root) / "local"),
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={log4j.as_uri()}",
            **(settings or {}),
        }
        for key, value in conf.items():
            builder = builder.config(key, value)
        try:
            _session = builder.getOrCreate()
        except Exception as err:  # the JVM did not start: say so in our words
            raise GlueUnavailable(
                f"could not start local Spark ({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                "check that Java 17 (or 11) is installed and that JAVA_HOME, if set, points to it"
            ) from err
        _session.sparkContext.setLogLevel("ERROR")
        return _session


def stop_local_spark_session() -> None:
    """Stop the process's local SparkSession (the next :func:`local_spark_session` starts a new one)."""
    global _session
    with _session_lock:
        if _session is not None:
            _session.stop()
            _session = None


# -- scripts ------------------------------------------------------------------


def glue_script_path(script: str | Path) -> Path | None:
    """Find a Glue script: an absolute path, else relative to the current folder, else to the installed ceap.

    >>> glue_script_path("glue_jobs/heavy_etl.py").name
    'heavy_etl.py'
    """
    path = Path(script)
    if path.is_absolute():
        return path if path.is_file() else None
    candidates = [Path.cwd() / path]
    spec = importlib.util.find_spec("glue_jobs")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))).parent / path)
    return next((candidate.resolve() for candidate in candidates if candidate.is_file()), None)


_modules_lock = threading.Lock()
_modules: dict[Path, tuple[tuple[int, int], ModuleType]] = {}


def _load_script(path: Path) -> ModuleType:
    """The script as a module, loaded once per version of the file (a changed file is reloaded)."""
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    with _modules_lock:
        cached = _modules.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        name = "ceap_glue_script_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load Glue script {path}")
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs: dataclasses and pickling look modules up by name.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        _modules[path] = (version, module)
        return module


# -- storage as the job sees it -----------------------------------------------------


class LocalJobStorage:
    """The job's storage on the local object store (``s3://bucket/key`` = that store), for use from a worker thread.

    ``read``/``write`` run the store's coroutines on the runner's event loop
    and wait for them. ``spark_path`` gives Spark a file it can read: the
    object's own file for a :class:`~adapters.local.objects.FileObjectStore`,
    else a copy in ``scratch``; a local path is used as it is (absolute, or
    relative to the current folder).

    Example (inside the worker thread)::

        storage = LocalJobStorage(objects, loop, Path(scratch))
        storage.read("ceap-local", "executions/e-1/Filter/output.json")
    """

    def __init__(self, objects: ObjectStore, loop: asyncio.AbstractEventLoop, scratch: Path) -> None:
        self._objects = objects
        self._loop = loop
        self._scratch = scratch
        self._copies = 0

    def _wait(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def read(self, bucket: str, key: str) -> bytes:
        try:
            return self._wait(self._objects.get(bucket, key))
        except ObjectNotFound:
            raise FileNotFoundError(f"no object at s3://{bucket}/{key}") from None

    def write(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._wait(self._objects.put(bucket, key, data, content_type))

    def spark_path(self, uri: str) -> str:
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            path_of = getattr(self._objects, "path_of", None)
            if path_of is not None:
                try:
                    path = path_of(bucket, key)
                except InvalidKey as err:
                    raise FileNotFoundError(f"{uri} is not a valid object address: {err}") from None
                if not path.is_file():
                    raise FileNotFoundError(f"no object at {uri}")
                return str(path)
            data = self.read(bucket, key)
            self._copies += 1
            copy = self._scratch / f"{self._copies}-{Path(key).name}"
            copy.write_bytes(data)
            return str(copy)
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.exists():
            raise FileNotFoundError(f"no file at {path}")
        return str(path)


# -- the runner -----------------------------------------------------------------


def _epoch_millis(seconds: float) -> int:
    return round(seconds * 1000)


def _error_message(error: BaseException) -> str:
    # Glue's ErrorMessage is "<ExceptionType>: <message>", one line; Spark
    # errors carry a JVM stack trace after their first line.
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    message = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return message[:2000]


class LocalGlueRunner:
    """Task runner for ``glue:startJobRun.sync`` that runs Glue scripts on local Spark.

    ``scripts`` maps a Glue job name to its script (a path, see
    :func:`glue_script_path`), or is a function from job name to path (``None``
    for an unknown job). ``session`` makes or returns the SparkSession
    (default: :func:`local_spark_session`). ``max_concurrent_runs`` jobs run at
    once; more wait their turn, as Glue runs queue.

    Example::

        runner = LocalGlueRunner(FileObjectStore(".ceap"), {"heavy-etl": "glue_jobs/heavy_etl.py"})
        runners.register("glue:startJobRun", runner)
    """

    #: How many finished runs :attr:`runs` and :attr:`summaries` keep.
    kept_runs: int = 1000

    def __init__(
        self,
        objects: ObjectStore,
        scripts: Mapping[str, str | Path] | Callable[[str], str | Path | None],
        *,
        session: Callable[[], Any] = local_spark_session,
        glue_version: str = "5.0",
        worker_type: str = "G.1X",
        number_of_workers: int = 2,
        max_concurrent_runs: int = 4,
    ) -> None:
        self.objects = objects
        self._scripts = scripts
        self._session = session
        self.glue_version = glue_version
        self.worker_type = worker_type
        self.number_of_workers = number_of_workers
        self._max_concurrent_runs = max_concurrent_runs
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        #: The finished runs' JobRuns, oldest first (the last :attr:`kept_runs`).
        self.runs: list[dict[str, Any]] = []
        #: What each successful run's ``main`` returned (for HeavyETL: metrics and timings), by run id.
        self.summaries: dict[str, Any] = {}

    @property
    def job_names(self) -> list[str] | None:
        """The registered job names, or ``None`` when a function resolves them."""
        return sorted(self._scripts) if isinstance(self._scripts, Mapping) else None

    def script_for(self, job_name: str) -> Path | None:
        """The script of ``job_name``, or ``None`` if there is no such job or its file is missing."""
        if isinstance(self._scripts, Mapping):
            found = self._scripts.get(job_name)
        else:
            found = self._scripts(job_name)
        return None if found is None else glue_script_path(found)

    async def __call__(self, resource: ResourceInfo, parameters: Any, context: TaskContext) -> dict[str, Any]:
        if resource.pattern != "sync":
            raise TaskFailed(
                "States.Runtime",
                f"the local Glue runner runs {resource.arn!r} only as arn:aws:states:::glue:startJobRun.sync "
                "(wait for the job); use the .sync resource",
            )
        job_name, arguments = self._check_parameters(parameters)
        script = self.script_for(job_name)
        if script is None:
            raise TaskFailed(
                "Glue.EntityNotFoundException",
                f"Failed to start job run due to missing metadata: no Glue job named {job_name!r} "
                f"(Service: Glue; Status Code: 400; Error Code: EntityNotFoundException). Locally, give "
                f"LocalGlueRunner a script for it (known jobs: {', '.join(self.job_names or []) or 'none'})",
            )
        run_id = "jr_" + f"{context.rng.getrandbits(256):064x}"
        argv = [str(script), "--JOB_NAME", job_name, "--JOB_RUN_ID", run_id]
        for name, value in arguments.items():
            argv += [name, value]

        started_on = context.clock.time()
        began = time.perf_counter()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._worker_pool(), self._run_script, script, argv, run_id, loop)
        error: BaseException | None = None
        try:
            summary = await future
        except asyncio.CancelledError:
            # The task timed out or the execution stopped: stop Spark's work too.
            self._cancel(run_id)
            raise
        except Exception as err:  # every failure of the job is a FAILED run, as on Glue
            error = err
            summary = None
            log.info("Glue job %s run %s failed: %s", job_name, run_id, _error_message(err))
            log.debug("Glue job %s run %s traceback", job_name, run_id, exc_info=err)
        job_run = self._job_run(
            run_id, job_name, arguments, parameters, started_on, context.clock.time(), time.perf_counter() - began, error
        )
        self._keep(job_run, summary if error is None else None)
        if error is not None:
            raise TaskFailed("States.TaskFailed", json.dumps(job_run, separators=(",", ":")))
        return job_run

    # -- helpers ---------------------------------------------------------------

    def _keep(self, job_run: dict[str, Any], summary: Any) -> None:
        # A long-lived process (a local server, a benchmark) must not grow without bound.
        self.runs.append(job_run)
        del self.runs[: -self.kept_runs]
        if summary is not None:
            self.summaries[job_run["Id"]] = summary
            while len(self.summaries) > self.kept_runs:
                del self.summaries[next(iter(self.summaries))]

    @staticmethod
    def _check_parameters(parameters: Any) -> tuple[str, dict[str, str]]:
        if not isinstance(parameters, Mapping) or not isinstance(parameters.get("JobName"), str) or not parameters["JobName"]:
            raise TaskFailed(
                "Glue.InvalidInputException",
                "StartJobRun needs Parameters with a non-empty string 'JobName' (and optional 'Arguments')",
            )
        arguments = parameters.get("Arguments") or {}
        if not isinstance(arguments, Mapping):
            raise TaskFailed("Glue.InvalidInputException", "StartJobRun 'Arguments' must be an object of string values")
        wrong = sorted(str(k) for k, v in arguments.items() if not isinstance(k, str) or not isinstance(v, str))
        if wrong:
            raise TaskFailed(
                "Glue.InvalidInputException",
                f"StartJobRun 'Arguments' values must be strings; not a string: {', '.join(wrong)} "
                "(turn numbers and objects into strings, e.g. with States.Format or States.JsonToString)",
            )
        return parameters["JobName"], dict(arguments)

    def _worker_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        # Our own threads, not the loop's default executor: a job waits on
        # store calls that may themselves need the default executor.
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._max_concurrent_runs, thread_name_prefix="ceap-glue"
            )
        return self._executor

    def _run_script(self, script: Path, argv: list[str], run_id: str, loop: asyncio.AbstractEventLoop) -> Any:
        spark = self._session()
        context = spark.sparkContext
        # Tags this thread's Spark jobs, so a cancelled task can stop them.
        context.setJobGroup(run_id, f"Glue job run {run_id}", interruptOnCancel=True)
        try:
            module = _load_script(script)
            main = getattr(module, "main", None)
            if not callable(main):
                raise AttributeError(f"Glue script {script} defines no main(argv, *, spark, storage) for the local runner")
            with tempfile.TemporaryDirectory(prefix="ceap-glue-run-") as scratch:
                return main(argv, spark=spark, storage=LocalJobStorage(self.objects, loop, Path(scratch)))
        finally:
            context.setLocalProperty("spark.jobGroup.id", None)

    def _cancel(self, run_id: str) -> None:
        try:
            self._session().sparkContext.cancelJobGroup(run_id)
        except Exception:  # best effort: the session may be gone already
            log.debug("could not cancel Spark jobs of run %s", run_id, exc_info=True)

    def _job_run(
        self,
        run_id: str,
        job_name: str,
        arguments: dict[str, str],
        parameters: Mapping[str, Any],
        started_on: float,
        completed_on: float,
        seconds: float,
        error: BaseException | None,
    ) -> dict[str, Any]:
        workers = parameters.get("NumberOfWorkers", self.number_of_workers)
        job_run: dict[str, Any] = {
            "AllocatedCapacity": workers,
            "Arguments": arguments,
            "Attempt": 0,
            "CompletedOn": _epoch_millis(completed_on),
            "ExecutionClass": "STANDARD",
            "ExecutionTime": round(seconds),
            "GlueVersion": self.glue_version,
            "Id": run_id,
            "JobMode": "SCRIPT",
            "JobName": job_name,
            "JobRunState": "SUCCEEDED" if error is None else "FAILED",
            "LastModifiedOn": _epoch_millis(completed_on),
            "LogGroupName": "/aws-glue/jobs",
            "MaxCapacity": float(workers),
            "NumberOfWorkers": workers,
            "PredecessorRuns": [],
            "StartedOn": _epoch_millis(started_on),
            "Timeout": parameters.get("Timeout", 2880),
            "WorkerType": parameters.get("WorkerType", self.worker_type),
        }
        if error is not None:
            job_run["ErrorMessage"] = _error_message(error)
        return dict(sorted(job_run.items()))
