"""PMC Lab core: Partial Model Collapse and friends, headless (no Streamlit), on CPU or GPU."""

from pmc_core.config import ConfigError, MethodConfig, ModelConfig, OptimConfig, RunConfig, SamplingConfig
from pmc_core.models import LoadedModel, ModelLoadError, load_model
from pmc_core.prompts import PromptFileError, PromptItem, load_builtin, load_prompts, parse_prompts, save_prompts
from pmc_core.run import PMCRun, RunInputError, TrainingDivergedError, summarize

__all__ = [
    "ConfigError", "LoadedModel", "MethodConfig", "ModelConfig", "ModelLoadError", "OptimConfig", "PMCRun",
    "PromptFileError", "PromptItem", "RunConfig", "RunInputError", "SamplingConfig", "TrainingDivergedError",
    "load_builtin", "load_model", "load_prompts", "parse_prompts", "save_prompts", "summarize",
]
