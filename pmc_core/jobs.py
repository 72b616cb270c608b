"""Background jobs: each owns one PMCRun and a worker thread that steps it on command; status is plain data.

A `Job` executes commands one at a time in its own thread: step once, run to a target iteration, pause (after the
current iteration), resume, stop (after the current iteration, then `run.finish()` writes summary.json). Between
iterations it also serves queued look-ups (answers or token log-probabilities at an earlier iteration), so a caller
never waits on the run's lock while the run trains. Every public method is safe to call from any thread; nothing
here knows about Streamlit.

States:
    idle      nothing to do; Step / Run N accepted
    running   working towards `target_iteration`
    paused    target not reached, waiting for resume
    stopped   stopped by the user (summary written when the run had started); read-only from then on
    finished  reached the planned iterations (config.iterations), summary written; read-only
    failed    an iteration raised (e.g. TrainingDivergedError); the history saved so far is kept
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import traceback
import uuid
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any, Callable, Literal

from pmc_core import storage
from pmc_core.config import RunConfig
from pmc_core.models import LoadedModel
from pmc_core.prompts import PromptItem
from pmc_core.run import PMCRun, RunInputError, TrainingDivergedError

JobState = Literal["idle", "running", "paused", "stopped", "finished", "failed"]
TERMINAL_STATES = ("stopped", "finished", "failed")
SPEED_WINDOW = 5  # iterations averaged for seconds per iteration
RESULT_CACHE_SIZE = 64  # answered look-ups kept per job


class JobError(RuntimeError):
    """A command the job cannot carry out in its current state; the message says why."""


@dataclass(frozen=True)
class JobStatus:
    """What a page polls: a plain, immutable snapshot of one job."""

    job_id: str
    label: str
    run_dir: str
    model_source: str
    state: JobState
    iteration: int  # last finished iteration; -1 before the reference answers (iteration 0)
    target_iteration: int | None  # where the current Step / Run N stops
    planned_iterations: int  # config.iterations: the job finishes there
    phase: str  # what the worker does right now (the run's phase, or a queued look-up)
    pending: Literal["pause", "stop", "finish"] | None  # acted on after the current iteration
    error: str | None
    read_only: bool  # a run reopened from disk: viewable and rewindable, not trainable
    created_at: float  # time.time() stamps
    started_at: float | None
    updated_at: float
    seconds_per_iteration: float | None
    eta_seconds: float | None  # until target_iteration, at the current speed
    records: int  # iterations in the history (including iteration 0)
    summary: dict[str, Any] | None

    @property
    def busy(self) -> bool:
        """The worker is (or is about to be) working: training commands other than pause/stop are refused."""
        return self.state == "running" or self.pending is not None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label_for(config: RunConfig) -> str:
    """Folder label from method and model. Example: pmc + "HuggingFaceTB/SmolLM2-135M" -> "pmc-SmolLM2-135M"."""
    model = Path(config.model.source.rstrip("/")).name or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{config.method.name}-{model}")[:60]


class Job:
    """One PMCRun driven by one worker thread."""

    def __init__(self, run: PMCRun, label: str, read_only: bool = False):
        self.job_id = uuid.uuid4().hex[:10]
        self.run = run
        self.label = label
        self.read_only = read_only
        self.config: RunConfig = run.config
        self.forget: list[PromptItem] = list(run.forget)
        self.retain: list[PromptItem] = list(run.retain)
        self.run_dir = str(run.out_dir) if run.out_dir else ""
        self.model_source = run.config.model.source
        self._cond = threading.Condition()
        self._state: JobState = "idle"
        self._target: int | None = None
        self._pending: Literal["pause", "stop", "finish"] | None = None
        self._closing = False
        self._finish_on_close = True
        self._activity: str | None = None
        self._error: str | None = None
        self.error_details: str | None = None  # the traceback of an unexpected failure, for an expander
        self._summary: dict[str, Any] | None = None
        self._history: list[dict[str, Any]] = []  # published copies; never mutated after publication
        self._requests: deque[tuple[Callable[[], Any], Future, str]] = deque()
        self._results: OrderedDict[tuple, Future] = OrderedDict()
        self._created_at = self._updated_at = time.time()
        self._started_at: float | None = None
        if read_only:
            self._sync_history()
            summary_path = Path(self.run_dir) / "summary.json"
            self._summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
            self._state = "finished" if self._summary else "stopped"
        self._thread = threading.Thread(target=self._work, name=f"pmc-job-{self.job_id}", daemon=True)
        self._thread.start()

    # ----- reading ----------------------------------------------------------------------------------------------------
    def status(self) -> JobStatus:
        with self._cond:
            iteration = self._history[-1]["iteration"] if self._history else -1
            speed = self._seconds_per_iteration()
            remaining = (self._target - iteration) if self._target is not None and self._state == "running" else None
            return JobStatus(
                job_id=self.job_id, label=self.label, run_dir=self.run_dir, model_source=self.model_source,
                state=self._state, iteration=iteration, target_iteration=self._target,
                planned_iterations=self.config.iterations, phase=self._activity or self.run.phase,
                pending=self._pending, error=self._error, read_only=self.read_only, created_at=self._created_at,
                started_at=self._started_at, updated_at=self._updated_at, seconds_per_iteration=speed,
                eta_seconds=remaining * speed if remaining is not None and speed is not None else None,
                records=len(self._history), summary=copy.deepcopy(self._summary),
            )

    def history(self) -> list[dict[str, Any]]:
        """The records so far (plain dicts; treat as read-only: they are shared between callers)."""
        with self._cond:
            return list(self._history)

    def references(self) -> list[str]:
        """The original answers (iteration 0 greedy answers), once the run has started."""
        with self._cond:
            return [p["original_answer"] for p in self._history[0]["prompts"]] if self._history else []

    def wait(self, timeout: float, until: Callable[[JobStatus], bool] | None = None) -> JobStatus:
        """Block until `until(status)` (default: not busy) or the timeout; returns the last status."""
        until = until or (lambda status: not status.busy)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                status = self.status()
                left = deadline - time.monotonic()
                if until(status) or left <= 0:
                    return status
                self._cond.wait(left)

    # ----- commands ---------------------------------------------------------------------------------------------------
    def step(self) -> JobStatus:
        """Run one iteration (the reference answers first, if the run has not started)."""
        return self.run_iterations(1)

    def run_iterations(self, count: int) -> JobStatus:
        """Run `count` more iterations, stopping at the planned iterations at the latest."""
        if count < 1:
            raise JobError(f"the number of iterations must be at least 1, got {count}")
        with self._cond:
            self._check_trainable()
            if self._state == "running" or self._pending:
                raise JobError("the job is busy: pause or stop it first")
            done = max(self._last_iteration(), 0)
            if done >= self.config.iterations:
                raise JobError(f"all {self.config.iterations} planned iterations are done")
            self._target = min(done + count, self.config.iterations)
            self._state = "running"
            self._started_at = self._started_at or time.time()
            self._touch()
        return self.status()

    def pause(self) -> JobStatus:
        """Pause after the current iteration."""
        with self._cond:
            if self._state != "running":
                raise JobError(f"nothing to pause: the job is {self._state}")
            if self._pending is None:
                self._pending = "pause"
                self._touch()
        return self.status()

    def resume(self) -> JobStatus:
        with self._cond:
            if self._state != "paused":
                raise JobError(f"nothing to resume: the job is {self._state}")
            self._state = "running"
            self._touch()
        return self.status()

    def stop(self) -> JobStatus:
        """Stop after the current iteration and write the summary; the job is read-only afterwards."""
        with self._cond:
            if self._state in TERMINAL_STATES:
                raise JobError(f"the job has already {self._state}")
            if self._pending not in ("stop", "finish"):
                self._pending = "stop"
                self._touch()
        return self.status()

    # ----- look-ups at an earlier iteration (served by the worker between iterations) ---------------------------------
    def generate_at(self, iteration: int, questions: list[str] | None = None, greedy: bool = True) -> Future:
        """Answers of the model as it was after `iteration`; a Future of list[list[str]] (cached per arguments)."""
        questions = list(questions) if questions is not None else [item.question for item in self.forget]
        key = ("generate", iteration, tuple(questions), greedy)
        return self._request(key, f"answering at iteration {iteration}",
                             lambda: self.run.generate_at(iteration, questions, greedy=greedy))

    def token_logprobs_at(self, iteration: int, prompt_index: int) -> Future:
        """Per-token log-probabilities of a forget prompt's original answer after `iteration`; a Future of
        (tokens, logprobs)."""
        key = ("token_logprobs", iteration, prompt_index)
        return self._request(key, f"token log-probabilities at iteration {iteration}",
                             lambda: self.run.token_logprobs_at(iteration, prompt_index))

    def _request(self, key: tuple, activity: str, call: Callable[[], Any]) -> Future:
        with self._cond:
            known = self._results.get(key)
            if known is not None and not (known.done() and known.exception() is not None):
                self._results.move_to_end(key)
                return known
            if self._closing:
                raise JobError("the job was discarded")
            future: Future = Future()
            self._results[key] = future
            while len(self._results) > RESULT_CACHE_SIZE:
                self._results.popitem(last=False)
            self._requests.append((call, future, activity))
            self._cond.notify_all()
            return future

    # ----- the worker -------------------------------------------------------------------------------------------------
    def _has_work(self) -> bool:
        return bool(self._requests) or self._closing or self._state == "running" or self._pending in ("stop", "finish")

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._has_work():
                    self._cond.wait()
                if self._requests:
                    action, request = "request", self._requests.popleft()
                elif self._closing:
                    action, request = "close", None
                elif self._pending in ("stop", "finish"):
                    action, request = "finish", None
                else:
                    action, request = "step", None
            if action == "request":
                self._serve(*request)
            elif action == "close":
                self._close_out()
                return
            elif action == "finish":
                self._finish()
            else:
                self._advance()

    def _serve(self, call: Callable[[], Any], future: Future, activity: str) -> None:
        if not future.set_running_or_notify_cancel():
            return
        self._set_activity(activity)
        try:
            future.set_result(call())
        except Exception as error:  # handed to whoever waits on the future
            future.set_exception(error)
        finally:
            self._set_activity(None)

    def _advance(self) -> None:
        """One unit of training work: the reference answers if not started yet, else one iteration."""
        try:
            if not self.run.started:
                self.run.start()
            else:
                self.run.step()
        except Exception as error:
            self._fail(error)
            return
        with self._cond:
            self._sync_history()
            iteration = self._last_iteration()
            if iteration >= self.config.iterations:
                self._pending = "stop" if self._pending == "stop" else "finish"
            elif self._pending != "stop" and self._target is not None and iteration >= self._target:
                self._state, self._pending = "idle", None  # target reached: a pending pause has nothing left to hold
            elif self._pending == "pause":
                self._state, self._pending = "paused", None
            self._touch()

    def _finish(self) -> None:
        with self._cond:
            outcome: JobState = "finished" if self._pending == "finish" else "stopped"
        try:
            summary = self.run.finish() if self.run.started else None
        except Exception as error:
            self._fail(error)
            return
        with self._cond:
            self._sync_history(refresh_last=True)
            self._summary = summary
            self._state, self._pending = outcome, None
            self._touch()

    def _fail(self, error: Exception) -> None:
        with self._cond:
            self._sync_history()
            # The run's own errors carry a readable message; anything else is named by its type.
            readable = isinstance(error, (TrainingDivergedError, RunInputError))
            self._error = str(error) if readable else f"{type(error).__name__}: {error}"
            self.error_details = None if readable else "".join(traceback.format_exception(error))
            self._state, self._pending = "failed", None
            self._touch()

    def _close_out(self) -> None:
        with self._cond:
            finish = (self._finish_on_close and self._state not in TERMINAL_STATES and not self.read_only
                      and self.run.started)
            requests, self._requests = list(self._requests), deque()
        for _, future, _ in requests:
            if future.set_running_or_notify_cancel():
                future.set_exception(JobError("the job was discarded"))
        if finish:
            with self._cond:
                self._pending = "stop"
            self._finish()
        elif not self.run.started and self.run_dir:
            _remove_if_empty(Path(self.run_dir))

    # ----- helpers (call with self._cond held) ------------------------------------------------------------------------
    def _check_trainable(self) -> None:
        if self.read_only:
            raise JobError("this run was opened from disk: it can be viewed and rewound, not trained further")
        if self._state in TERMINAL_STATES:
            raise JobError(f"the job has {self._state}: reset to start a new run")
        if self._closing:
            raise JobError("the job was discarded")

    def _last_iteration(self) -> int:
        return self._history[-1]["iteration"] if self._history else -1

    def _sync_history(self, refresh_last: bool = False) -> None:
        """Publish deep copies of the run's new records (and of the last one, after finish() updated it)."""
        records = self.run.history
        if refresh_last and self._history and records:
            self._history[-1] = copy.deepcopy(records[len(self._history) - 1])
        self._history.extend(copy.deepcopy(record) for record in records[len(self._history):])

    def _seconds_per_iteration(self) -> float | None:
        recent = [r["timings"]["total"] for r in self._history[-SPEED_WINDOW:] if r["iteration"] > 0]
        return fmean(recent) if recent else None

    def _set_activity(self, activity: str | None) -> None:
        with self._cond:
            self._activity = activity
            self._touch()

    def _touch(self) -> None:
        self._updated_at = time.time()
        self._cond.notify_all()

    def _discard(self, finish: bool) -> None:
        with self._cond:
            self._closing = True
            self._finish_on_close = finish
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread to end (after a discard); True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


class JobManager:
    """All live jobs of this process, by id; one per PMCRun and one per run folder."""

    def __init__(self, max_jobs: int = 4):
        self.max_jobs = max_jobs  # each job holds a copy of the model: older finished jobs make room
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def create(self, loaded: LoadedModel, forget: list[PromptItem], retain: list[PromptItem], config: RunConfig,
               label: str | None = None) -> Job:
        """A new run saved in a fresh folder under storage.runs_root(); raises RunInputError on bad prompt sets."""
        label = label or _label_for(config)
        folder = _reserve_run_dir(label)
        try:
            run = PMCRun(loaded, forget, retain, config, out_dir=folder)
            return self.adopt(run, label)
        except Exception:
            _remove_if_empty(folder)
            raise

    def open_folder(self, loaded: LoadedModel, folder: str | Path) -> Job:
        """A read-only job for a saved run (to generate and look at earlier iterations); reuses a live job's run."""
        existing = self.find_by_folder(folder)
        if existing is not None:
            return existing
        run = PMCRun.from_folder(loaded, folder)
        return self.adopt(run, Path(folder).name, read_only=True)

    def adopt(self, run: PMCRun, label: str, read_only: bool = False) -> Job:
        """Drive an existing PMCRun; refuses a run (or a run folder) that another job already drives."""
        with self._lock:
            for job in self._jobs.values():
                if job.run is run:
                    raise JobError(f"this run is already driven by job {job.job_id}")
                if run.out_dir and job.run_dir and _same_folder(job.run_dir, run.out_dir):
                    raise JobError(f"the run folder {run.out_dir} is already driven by job {job.job_id}")
            self._make_room()
            job = Job(run, label, read_only=read_only)
            self._jobs[job.job_id] = job
            return job

    def _make_room(self) -> None:
        """Drop the oldest finished, stopped, failed or read-only jobs beyond max_jobs - 1."""
        if len(self._jobs) < self.max_jobs:
            return
        idle = sorted((job for job in self._jobs.values()
                       if job.read_only or job.status().state in TERMINAL_STATES),
                      key=lambda job: job.status().updated_at)
        while len(self._jobs) >= self.max_jobs and idle:
            job = idle.pop(0)
            job._discard(finish=False)
            del self._jobs[job.job_id]
        if len(self._jobs) >= self.max_jobs:
            raise JobError(f"{len(self._jobs)} jobs are live (the most this process keeps): stop or reset one first")

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def find_by_folder(self, folder: str | Path) -> Job | None:
        with self._lock:
            return next((job for job in self._jobs.values() if job.run_dir and _same_folder(job.run_dir, folder)),
                        None)

    def statuses(self) -> list[JobStatus]:
        """Every live job's status, most recently updated first."""
        with self._lock:
            jobs = list(self._jobs.values())
        return sorted((job.status() for job in jobs), key=lambda status: status.updated_at, reverse=True)

    def discard(self, job_id: str, finish: bool = True) -> None:
        """Forget a job: its worker ends after the current iteration (writing the summary if `finish`); the run
        folder stays on disk."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            job._discard(finish)

    def discard_all(self, finish: bool = False, timeout: float | None = None) -> None:
        with self._lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            job._discard(finish)
        for job in jobs:
            job.join(timeout)


def _same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _reserve_run_dir(label: str) -> Path:
    """Create a fresh run folder under storage.runs_root() now, so two jobs started together never share one."""
    while True:
        folder = storage.new_run_dir(storage.runs_root(), label)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def _remove_if_empty(folder: Path) -> None:
    """Drop a reserved run folder that never received anything."""
    try:
        folder.rmdir()
    except OSError:
        pass
