"""Background jobs (pmc_core.jobs) and the probe (pmc_core.probe) on the tiny random model."""

from __future__ import annotations

import json
import math

import pytest

from pmc_core import PromptItem, RunConfig
from pmc_core.config import OptimConfig, SamplingConfig
from pmc_core.jobs import JobError, JobManager
from pmc_core.probe import knows_fact, probe
from pmc_core.storage import load_run

FORGET = [PromptItem("What is the capital of France?", "Paris", "Which city is the capital of France?"),
          PromptItem("Who wrote Hamlet?", "William Shakespeare")]
RETAIN = [PromptItem("What colour is the sky?", "The sky is blue.")]
WAIT = 120  # seconds; a tiny-model iteration takes well under one


def quick_config(iterations: int = 4, seed: int = 1) -> RunConfig:
    return RunConfig(iterations=iterations, eval_every=2, seed=seed,
                     sampling=SamplingConfig(num_samples=2, max_new_tokens=6),
                     optim=OptimConfig(learning_rate=5e-2, warmup_iterations=0))


@pytest.fixture()
def manager(tmp_path, monkeypatch):
    monkeypatch.setenv("PMC_LAB_RUNS", str(tmp_path))
    jobs = JobManager()
    yield jobs
    jobs.discard_all(finish=False, timeout=WAIT)


def iterations_of(history):
    return [record["iteration"] for record in history]


def test_run_n_runs_n_iterations_then_finishes_at_the_plan(manager, tiny_model, tmp_path):
    job = manager.create(tiny_model, FORGET, RETAIN, quick_config(iterations=3))
    assert job.status().state == "idle" and job.status().iteration == -1
    job.run_iterations(2)
    status = job.wait(WAIT)
    assert (status.state, status.iteration, status.target_iteration) == ("idle", 2, 2)
    assert iterations_of(job.history()) == [0, 1, 2]
    assert iterations_of(load_run(job.run_dir).history) == [0, 1, 2]
    assert str(tmp_path) in job.run_dir
    assert status.seconds_per_iteration is not None and status.seconds_per_iteration > 0

    job.run_iterations(10)  # capped at the planned 3 iterations
    status = job.wait(WAIT)
    assert status.state == "finished" and status.iteration == 3 and status.target_iteration == 3
    assert status.summary["iterations"] == 3
    assert json.loads((load_run(job.run_dir).folder / "summary.json").read_text())["iterations"] == 3
    with pytest.raises(JobError, match="finished"):
        job.step()


def test_pause_resume_and_stop(manager, tiny_model):
    job = manager.create(tiny_model, FORGET, RETAIN, quick_config(iterations=200))
    job.run_iterations(200)
    job.wait(WAIT, until=lambda s: s.iteration >= 1)
    job.pause()
    status = job.wait(WAIT)
    assert status.state == "paused" and 1 <= status.iteration < 200
    paused_at = status.iteration
    assert job.wait(0.5, until=lambda s: s.iteration != paused_at).iteration == paused_at  # really waits

    job.resume()
    assert job.wait(WAIT, until=lambda s: s.iteration > paused_at).iteration > paused_at
    job.stop()
    status = job.wait(WAIT)
    assert status.state == "stopped" and status.iteration < 200
    assert status.summary["iterations"] == status.iteration
    assert iterations_of(load_run(job.run_dir).history) == list(range(status.iteration + 1))
    with pytest.raises(JobError, match="stopped"):
        job.run_iterations(1)


def test_a_failing_run_reports_failed_and_keeps_its_history(manager, tiny_model):
    job = manager.create(tiny_model, FORGET, RETAIN, quick_config())
    job.step()
    job.wait(WAIT)
    original = job.run.method.forget_loss
    job.run.method.forget_loss = lambda *args: original(*args) * float("nan")
    job.run_iterations(2)
    status = job.wait(WAIT)
    assert status.state == "failed" and "not finite" in status.error
    assert iterations_of(job.history()) == [0, 1]
    assert iterations_of(load_run(job.run_dir).history) == [0, 1]
    with pytest.raises(JobError, match="failed"):
        job.step()
    answers = job.generate_at(1).result(timeout=WAIT)  # earlier iterations stay readable
    assert len(answers) == len(FORGET)


def test_two_jobs_at_once_do_not_interfere(manager, tiny_model):
    first = manager.create(tiny_model, FORGET, RETAIN, quick_config())
    second = manager.create(tiny_model, FORGET, RETAIN, quick_config())
    assert first.run is not second.run and first.run_dir != second.run_dir
    with pytest.raises(JobError, match="already driven"):
        manager.adopt(first.run, "again")
    first.run_iterations(3)
    second.run_iterations(3)
    assert first.wait(WAIT).iteration == 3 and second.wait(WAIT).iteration == 3

    def picked(job):
        return [[p["picked_text"] for p in record["prompts"]] for record in job.history()]

    assert picked(first) == picked(second)  # same seed, same results, although they ran side by side
    for a, b in zip(first.history(), second.history()):
        assert a["forget_nll"] == pytest.approx(b["forget_nll"], rel=1e-4)
    assert {s.job_id for s in manager.statuses()} == {first.job_id, second.job_id}


def test_look_ups_are_served_between_iterations_and_cached(manager, tiny_model):
    job = manager.create(tiny_model, FORGET, RETAIN, quick_config(iterations=200))
    job.run_iterations(200)
    job.wait(WAIT, until=lambda s: s.iteration >= 1)
    answers = job.generate_at(0).result(timeout=WAIT)  # served while the job keeps running
    assert answers == [[reference] for reference in job.references()]
    assert job.generate_at(0) is job.generate_at(0)
    tokens, logprobs = job.token_logprobs_at(0, 1).result(timeout=WAIT)
    assert len(tokens) == len(logprobs) > 0 and all(lp <= 0 for lp in logprobs)
    assert job.status().state == "running"
    job.stop()
    assert job.wait(WAIT).state == "stopped"


def test_a_saved_run_reopens_read_only(manager, tiny_model):
    job = manager.create(tiny_model, FORGET, RETAIN, quick_config(iterations=2))
    job.run_iterations(2)
    job.wait(WAIT)
    assert manager.open_folder(tiny_model, job.run_dir) is job  # one job per run folder
    manager.discard(job.job_id)
    assert job.join(WAIT)

    reopened = manager.open_folder(tiny_model, job.run_dir)
    status = reopened.status()
    assert status.read_only and status.state == "finished" and status.iteration == 2
    assert reopened.history() == job.history()
    assert reopened.generate_at(0).result(timeout=WAIT) == [[r] for r in job.references()]
    with pytest.raises(JobError, match="opened from disk"):
        reopened.step()


def test_discarding_an_unstarted_job_leaves_no_folder(manager, tiny_model, tmp_path):
    job = manager.create(tiny_model, FORGET, RETAIN, quick_config())
    manager.discard(job.job_id)
    assert job.join(WAIT)
    assert list(tmp_path.iterdir()) == []


def test_knows_fact_is_rouge_l_recall_of_the_ground_truth():
    assert knows_fact("Paris", "The capital of France is Paris.") is True
    assert knows_fact("William Shakespeare", "Charles Dickens wrote it") is False
    assert knows_fact("William Shakespeare", "Shakespeare") is True  # recall 0.5
    assert knows_fact(None, "anything") is None


def test_probe_rows(tiny_model):
    rows = probe(tiny_model, FORGET + [PromptItem("No answer given?")], max_new_tokens=6)
    assert [row["question"] for row in rows] == [item.question for item in FORGET] + ["No answer given?"]
    first = rows[0]
    assert first["answer_prob"] == pytest.approx(math.exp(-first["answer_nll"]))
    assert isinstance(first["knows"], bool) and isinstance(first["greedy_answer"], str)
    assert rows[-1]["answer_nll"] is None and rows[-1]["knows"] is None
