"""Attributions of a network's outputs to its input features, with Captum's names and
arguments: saliency, gradient x input, integrated gradients, occlusion, SmoothGrad.

Beyond Captum, ``target="all"`` attributes every class at once (one Jacobian per point
for the gradient methods, the same forward passes for occlusion) and ``max_memory``
bounds the work of every method.
"""
from ._common import ALL, Attribution
from ._quadrature import METHODS, approximation_parameters
from .gradient import InputXGradient, Saliency
from .integrated_gradients import IntegratedGradients
from .noise_tunnel import NT_TYPES, NoiseTunnel
from .occlusion import Occlusion
from .during_training import AttributionRecorder

__all__ = ["ALL", "Attribution", "AttributionRecorder", "InputXGradient", "IntegratedGradients", "METHODS",
           "NT_TYPES", "NoiseTunnel", "Occlusion", "Saliency", "approximation_parameters"]
