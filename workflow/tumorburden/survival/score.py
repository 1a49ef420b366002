"""Prediction error and discrimination at horizons, as ``riskRegression::Score`` computes them.

For predicted absolute risks F_i(t) = 1 - S(t | x_i) of one or more models at horizons t:

- **Brier score** (IPCW): mean over patients of w_i(t) (I(T_i <= t) - F_i(t))^2 with
  w_i = I(T_i <= t, event) / G(T_i-) + I(T_i > t) / G(t), patients censored by t weight 0, G the
  marginal Kaplan-Meier of the censoring times (riskRegression ``cens.model = "km"``).
- **IPA** (index of prediction accuracy, scaled Brier): 1 - Brier(model) / Brier(null model),
  the null model being the marginal Kaplan-Meier risk 1 - KM(t) given to every patient.
- **AUC(t)** (cumulative/dynamic, IPCW, Blanche et al. 2013): cases T_i <= t with the event
  weighted 1 / G(T_i-), controls T_j > t weighted 1 / G(t), risk ties count 1/2; its standard
  error from the influence function as riskRegression (``se.fit = TRUE``, ``conservative =
  FALSE``), CI estimate +- z se.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SCORE_COLUMNS = ["time_days", "model", "n", "cases", "controls", "censored_before", "brier", "brier_se",
                 "brier_lower", "brier_upper", "ipa", "auc", "auc_se", "auc_lower", "auc_upper", "status"]
NULL_MODEL = "null model"


def censoring_survival(time, event, at, lag: bool = False) -> np.ndarray:
    """Marginal Kaplan-Meier G of the censoring times at ``at`` (G(at-) when ``lag``).

    prodlim's reverse Kaplan-Meier (what riskRegression uses): a censoring is the 'event', and an
    event at the same time stays in the risk set."""
    raise NotImplementedError


def score_at(time, event, risk_by_model: dict[str, np.ndarray], times, alpha: float = 0.05,
             null_model: bool = True) -> pd.DataFrame:
    """One row per (horizon, model), columns SCORE_COLUMNS.

    time, event: the patients' follow-up (event 1/0). risk_by_model: model name -> predicted
    absolute risk of the event by each horizon, an (n, len(times)) array (an (n,) array is taken
    as the same risk at every horizon). With ``null_model`` the marginal Kaplan-Meier risk is
    scored too (model ``NULL_MODEL``, its IPA 0) and every model's IPA is against it.
    A horizon without a case or a control is a row "not scored: <reason>"."""
    raise NotImplementedError


def cox_risk(train: pd.DataFrame, duration: str, event: str, covariates: list[str], times,
             newdata: pd.DataFrame | None = None) -> np.ndarray:
    """(n_new, len(times)) absolute risk 1 - S(t | x) from a Cox model (Efron ties) fitted on
    ``train``: riskRegression's ``predictRisk(coxph)`` (baseline hazard of survfit.coxph)."""
    raise NotImplementedError


def score_cox(df: pd.DataFrame, duration: str, event: str, covariates: list[str], times,
              alpha: float = 0.05) -> pd.DataFrame:
    """``score_at`` of the Cox model of ``covariates`` fitted and scored on ``df`` (complete cases)
    and of the null model: ``tumorburden survival score``."""
    raise NotImplementedError
