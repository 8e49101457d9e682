"""Adversarial saliency maps and the JSMA crafting algorithm (Papernot et al. 2016); fast
gradient attacks (FGSM/FGM and PGD, cleverhans 4 names)."""
from .saliency import (forward_derivative, target_terms, target_terms_vjp, saliency_from_jacobian,
                       saliency_map, softmax_output)
from .pairs import best_pairs
from .jsma import JSMAResult, jsma, expand_targets, jsma_untargeted
from .metrics import (success_rate, mean_distortion, source_target_matrix,
                      source_target_matrices, success_curve, hardness, hardness_matrix,
                      HardnessMatrix, HARDNESS_MIN_SUCCESS, PAPER_HARDNESS_GRID_CONFIRMED,
                      hardness_budget_approximation, hardness_matrix_budget_approximation,
                      PAPER_HARDNESS_UPSILONS, adversarial_distance, adversarial_distance_from_map,
                      wilson_interval)
from .gradient_step import (fast_gradient_method, projected_gradient_descent, optimize_linear,
                            clip_eta)

__all__ = ["forward_derivative", "target_terms", "target_terms_vjp", "saliency_from_jacobian",
           "saliency_map", "softmax_output",
           "best_pairs", "JSMAResult", "jsma", "expand_targets", "jsma_untargeted",
           "success_rate", "mean_distortion", "source_target_matrix",
           "source_target_matrices", "success_curve", "hardness", "hardness_matrix",
           "HardnessMatrix", "HARDNESS_MIN_SUCCESS", "PAPER_HARDNESS_GRID_CONFIRMED",
           "hardness_budget_approximation", "hardness_matrix_budget_approximation",
           "PAPER_HARDNESS_UPSILONS", "adversarial_distance", "adversarial_distance_from_map",
           "wilson_interval", "fast_gradient_method", "projected_gradient_descent", "optimize_linear", "clip_eta"]
