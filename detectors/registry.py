"""The shipped detector set, built from the policy files (the defaults, or a folder
of overrides with the same file names)."""

from __future__ import annotations

from pathlib import Path

from detectors.base import InferenceDetector, PromptDetector
from detectors.behaviour import DenialOfWalletDetector, ModelExtractionDetector, PrincipalAnomalyDetector
from detectors.dlp import DLPDetector
from detectors.injection import InjectionDetector, ResponseDetector
from detectors.models import DriftDetector, ProvenanceDetector
from detectors.policy import ShadowAIDetector
from detectors.state import SlotStore

__all__ = ["DetectorSet", "POLICY_FILES", "default_detectors"]

#: Policy file name → the detector that reads it. A ``policy_dir`` may override any of them.
POLICY_FILES = {
    "classifications.yaml": "content.dlp",
    "approved_ai.yaml": "policy.shadow_ai",
    "approved_models.yaml": "model.provenance",
}


class DetectorSet:
    """Content and behaviour detectors for prompts, the shadow-AI policy, and model detectors."""

    def __init__(self, prompt: list[PromptDetector], shadow_ai: ShadowAIDetector | None,
                 inference: list[InferenceDetector]) -> None:
        self.prompt = prompt
        self.shadow_ai = shadow_ai
        self.inference = inference


def _policy(policy_dir: str | Path | None, name: str) -> Path | None:
    if policy_dir is None:
        return None
    path = Path(policy_dir) / name
    return path if path.exists() else None


def default_detectors(*, policy_dir: str | Path | None = None) -> DetectorSet:
    """Every shipped detector with its default settings."""
    classifications = _policy(policy_dir, "classifications.yaml")
    approved_ai = _policy(policy_dir, "approved_ai.yaml")
    approved_models = _policy(policy_dir, "approved_models.yaml")
    # One compact per-principal store for the behaviour detectors that key by principal: the
    # key and its bookkeeping are paid once (the longer of their ttls keeps both baselines).
    principals = SlotStore(capacity=1_000_000, ttl=14 * 24 * 3600.0)
    prompt: list[PromptDetector] = [
        DLPDetector(policy=classifications) if classifications else DLPDetector(),
        InjectionDetector(),
        ResponseDetector(),
        PrincipalAnomalyDetector(store=principals),
        DenialOfWalletDetector(store=principals),
    ]
    shadow_ai = ShadowAIDetector(approved_ai) if approved_ai else ShadowAIDetector()
    inference: list[InferenceDetector] = [
        DriftDetector(),
        ProvenanceDetector(approved_models) if approved_models else ProvenanceDetector(),
        ModelExtractionDetector(),
    ]
    return DetectorSet(prompt, shadow_ai, inference)
