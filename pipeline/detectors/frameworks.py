"""Framework mappings, spelled once so every detector (and every alert) agrees.

Controls follow docs/contracts/alerts.md (``{framework: OWASP-NHI, control: NHI-07}``):
- OWASP-NHI: OWASP Non-Human Identities Top 10 (2025), ``NHI-01`` .. ``NHI-10``
- NIST-CSF-2.0: subcategory ids (``PR.AA-05``, ``DE.CM-03``, ``GV.RR-02``)
- NIST-AI-RMF: AI RMF 1.0 subcategories (``GOVERN 1.2``, ``MANAGE 2.4``)
- CSA-MAESTRO: the agentic threat-model layer (``L6 Security and Compliance``)
"""

from __future__ import annotations

from typing import Final

from pipeline.detectors.base import Framework

OWASP_NHI_TITLES: Final = {
    1: "Improper Offboarding",
    2: "Secret Leakage",
    3: "Vulnerable Third-Party NHI",
    4: "Insecure Authentication",
    5: "Overprivileged NHI",
    6: "Insecure Cloud Deployment Configurations",
    7: "Long-Lived Secrets",
    8: "Environment Isolation",
    9: "NHI Reuse",
    10: "Human Use of NHI",
}

MAESTRO_LAYERS: Final = {
    1: "Foundation Models",
    2: "Data Operations",
    3: "Agent Frameworks",
    4: "Deployment and Infrastructure",
    5: "Evaluation and Observability",
    6: "Security and Compliance",
    7: "Agent Ecosystem",
}


def owasp_nhi(n: int) -> Framework:
    """OWASP NHI Top 10 2025 item ``n`` (1..10), e.g. 7 -> NHI-07 Long-Lived Secrets."""
    if n not in OWASP_NHI_TITLES:
        raise ValueError(f"no OWASP NHI item {n}")
    return Framework("OWASP-NHI", f"NHI-{n:02d}")


def nist_csf(control: str) -> Framework:
    return Framework("NIST-CSF-2.0", control)


def ai_rmf(control: str) -> Framework:
    return Framework("NIST-AI-RMF", control)


def maestro(layer: int) -> Framework:
    return Framework("CSA-MAESTRO", f"L{layer} {MAESTRO_LAYERS[layer]}")
