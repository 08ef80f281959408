"""Predictive models: churn risk, purchase propensity, customer lifetime value and recommendations.

The estimators (``BetaGeo``, ``GammaGamma``, ``OutcomeClassifier``) follow scikit-learn's
conventions and never touch the store; ``Models`` (``ws.models``) builds their point-in-time
training data from a workspace, keeps versions in the registry and writes scores to profiles.
"""

from __future__ import annotations

from tenure.models.bgnbd import BetaGeo
from tenure.models.classifier import OutcomeClassifier
from tenure.models.dataset import Outcome
from tenure.models.gamma_gamma import GammaGamma
from tenure.models.recommendations import Recommendations
from tenure.models.registry import ModelInfo
from tenure.models.service import Models

__all__ = ["BetaGeo", "GammaGamma", "ModelInfo", "Models", "Outcome", "OutcomeClassifier", "Recommendations"]
