# Reference numbers from riskRegression::Score, survival's RMST and a Kaplan-Meier decision curve
# for tests/survival/test_score_r_parity.py.
#
#   Rscript tests/survival/r/score_reference.R tests/survival/r
#
# writes <dir>/pbc.csv (the data, as lung.csv and melanoma.csv from reference.R),
# <dir>/score_risks.csv (the Cox models' predicted risks, riskRegression::predictRisk, per patient
# and horizon, so the scoring is checked on R's own risks and the risk prediction on its own)
# and <dir>/score_reference.csv: dataset, analysis, key, statistic, value (long, one number a row),
# with R and package versions in the rows of analysis "version".
# lung: survival::lung, event = status 2. melanoma: MASS::Melanoma, event = died of melanoma.
# pbc: survival::pbc, the 312 randomised patients, event = death (status 2; transplant censored).
suppressPackageStartupMessages({library(survival); library(MASS); library(riskRegression)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
rows <- list()
add <- function(dataset, analysis, key, statistic, value) {
  rows[[length(rows) + 1]] <<- data.frame(dataset = dataset, analysis = analysis, key = as.character(key),
                                          statistic = statistic, value = as.numeric(value))
}
add("-", "version", R.version.string, "R", 0)
add("-", "version", as.character(packageVersion("survival")), "survival_version", 0)
add("-", "version", as.character(packageVersion("riskRegression")), "riskRegression_version", 0)
add("-", "version", as.character(packageVersion("prodlim")), "prodlim_version", 0)

lung <- survival::lung
lung$event <- as.integer(lung$status == 2)
mel <- MASS::Melanoma
mel$event <- as.integer(mel$status == 1)
pbc <- survival::pbc[!is.na(survival::pbc$trt), ]
pbc$event <- as.integer(pbc$status == 2)
write.csv(pbc[, c("id", "time", "status", "event", "trt", "age", "sex", "edema", "bili", "albumin", "protime")],
          file.path(out, "pbc.csv"), row.names = FALSE, na = "")

# Score of two nested Cox models (Efron ties) fitted and scored on the complete cases, null model
# and IPA, censoring weights from the marginal Kaplan-Meier (cens.model = "km"), influence-function
# SEs, and Score's contrasts (cox - small, each - null model). The small models have few distinct
# risks (many ties).
models <- list(
  list(name = "lung", data = lung, terms = c("age", "sex", "ph.ecog", "ph.karno"),
       formula = Surv(time, event) ~ age + sex + ph.ecog + ph.karno, small = Surv(time, event) ~ sex + ph.ecog,
       times = c(180, 365, 730)),
  list(name = "melanoma", data = mel, terms = c("thickness", "ulcer", "age", "sex"),
       formula = Surv(time, event) ~ log(thickness) + ulcer + age + sex, small = Surv(time, event) ~ ulcer + sex,
       times = c(1825, 3650)),
  list(name = "pbc", data = pbc, terms = c("age", "edema", "bili", "albumin", "protime"),
       formula = Surv(time, event) ~ age + edema + log(bili) + albumin + log(protime),
       small = Surv(time, event) ~ age + edema, times = c(1825, 3650)))
risks <- list()
for (m in models) {
  d <- m$data[complete.cases(m$data[, c("time", "event", m$terms)]), ]
  fit <- coxph(m$formula, data = d, x = TRUE, ties = "efron")
  small <- coxph(m$small, data = d, x = TRUE, ties = "efron")
  # predictRisk and Score turn their data into data.tables by reference: give them copies, so d
  # keeps its row names (the patients' rows in the CSV)
  p <- predictRisk(fit, newdata = data.table::copy(d), times = m$times)
  p_small <- predictRisk(small, newdata = data.table::copy(d), times = m$times)
  sc <- Score(list(small = small, cox = fit), formula = Surv(time, event) ~ 1, data = data.table::copy(d), times = m$times,
              metrics = c("auc", "brier"), summary = "ipa", cens.model = "km", null.model = TRUE)
  for (i in seq_len(nrow(sc$Brier$score))) {
    r <- sc$Brier$score[i, ]
    k <- paste0(r$model, "|", r$times)
    for (s in c("Brier", "se", "lower", "upper", "IPA")) add(m$name, "brier", k, s, r[[s]])
  }
  for (i in seq_len(nrow(sc$AUC$score))) {
    r <- sc$AUC$score[i, ]
    k <- paste0(r$model, "|", r$times)
    for (s in c("AUC", "se", "lower", "upper")) add(m$name, "auc", k, s, r[[s]])
  }
  for (metric in c("Brier", "AUC")) {
    ct <- sc[[metric]]$contrasts
    for (i in seq_len(nrow(ct))) {
      r <- ct[i, ]
      k <- paste0(r$model, "|", r$reference, "|", r$times)
      for (s in c(paste0("delta.", metric), "se", "lower", "upper", "p"))
        add(m$name, paste0(tolower(metric), "_contrast"), k, sub("delta.*", "delta", s), r[[s]])
    }
  }
  add(m$name, "score_model", "cox", "n", nrow(d))
  for (j in seq_along(m$times)) {
    risks[[length(risks) + 1]] <- data.frame(dataset = m$name, model = "cox", row = seq_len(nrow(d)),
                                             rowname = rownames(d), time_days = m$times[j], risk = p[, j])
    risks[[length(risks) + 1]] <- data.frame(dataset = m$name, model = "small", row = seq_len(nrow(d)),
                                             rowname = rownames(d), time_days = m$times[j], risk = p_small[, j])
  }
  # Decision curve at each horizon: net benefit of treating patients with risk >= threshold,
  # true and false positives from the Kaplan-Meier of the treated (Vickers et al. 2008)
  km_all <- survfit(Surv(time, event) ~ 1, data = d)
  for (j in seq_along(m$times)) {
    tt <- m$times[j]
    s_all <- summary(km_all, times = tt, extend = TRUE)$surv
    for (pt in c(0.05, 0.1, 0.2, 0.3, 0.4, 0.5)) {
      k <- paste0(tt, "|", pt)
      add(m$name, "decision", k, "treat_all", (1 - s_all) - s_all * pt / (1 - pt))
      treated <- p[, j] >= pt
      if (!any(treated)) {
        add(m$name, "decision", k, "cox", 0)
        next
      }
      s_t <- summary(survfit(Surv(time, event) ~ 1, data = d[treated, ]), times = tt, extend = TRUE)$surv
      frac <- mean(treated)
      add(m$name, "decision", k, "cox", (1 - s_t) * frac - s_t * frac * pt / (1 - pt))
    }
  }
}
write.csv(do.call(rbind, risks), file.path(out, "score_risks.csv"), row.names = FALSE)

# RMST per group as print(survfit(...), rmean = tau) reports it; difference and ratio between the
# two groups as survRM2::rmst2 forms them from the per-group values (survRM2 is not in Debian):
# difference SE sqrt(se1^2 + se0^2), ratio by the delta method on the log scale
rmst <- function(name, data, group, tau) {
  fit <- survfit(as.formula(paste("Surv(time, event) ~", group)), data = data)
  tab <- summary(fit, rmean = tau)$table
  lev <- sub(".*=", "", rownames(tab))
  for (i in seq_along(lev)) {
    k <- paste0(group, "|", tau, "|", lev[i])
    add(name, "rmst", k, "rmean", tab[i, "rmean"])
    add(name, "rmst", k, "se", tab[i, "se(rmean)"])
  }
  z <- qnorm(0.975)
  r1 <- tab[2, "rmean"]; r0 <- tab[1, "rmean"]; s1 <- tab[2, "se(rmean)"]; s0 <- tab[1, "se(rmean)"]
  k <- paste0(group, "|", tau, "|", lev[2], "-", lev[1])
  dif <- r1 - r0; sd <- sqrt(s1^2 + s0^2)
  add(name, "rmst_contrast", k, "difference", dif)
  add(name, "rmst_contrast", k, "difference_lower", dif - z * sd)
  add(name, "rmst_contrast", k, "difference_upper", dif + z * sd)
  add(name, "rmst_contrast", k, "difference_p", 2 * pnorm(-abs(dif / sd)))
  lr <- log(r1 / r0); sl <- sqrt(s1^2 / r1^2 + s0^2 / r0^2)
  add(name, "rmst_contrast", k, "ratio", r1 / r0)
  add(name, "rmst_contrast", k, "ratio_lower", exp(lr - z * sl))
  add(name, "rmst_contrast", k, "ratio_upper", exp(lr + z * sl))
  add(name, "rmst_contrast", k, "ratio_p", 2 * pnorm(-abs(lr / sl)))
}
for (tau in c(365, 730)) rmst("lung", lung, "sex", tau)
for (tau in c(1825, 3650)) rmst("melanoma", mel, "ulcer", tau)
for (tau in c(1825, 3650)) rmst("pbc", pbc, "trt", tau)

res <- do.call(rbind, rows)
write.csv(res, file.path(out, "score_reference.csv"), row.names = FALSE)
cat("wrote", nrow(res), "reference numbers to", file.path(out, "score_reference.csv"), "\n")
