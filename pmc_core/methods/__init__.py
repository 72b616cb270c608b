"""Registry of unlearning methods: name -> class. Each method lives in one small file of this package."""

from pmc_core.methods.base import ForgetTargets, MethodContext, UnlearningMethod
from pmc_core.methods.pmc import PartialModelCollapse

METHODS: dict[str, type[UnlearningMethod]] = {
    PartialModelCollapse.name: PartialModelCollapse,
}

__all__ = ["METHODS", "ForgetTargets", "MethodContext", "UnlearningMethod"]
