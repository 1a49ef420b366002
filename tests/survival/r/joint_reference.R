# Reference numbers from nlme::lme for the mixed-model part of the joint model
# (tests/survival/test_joint_r_parity.py).
#
#   Rscript tests/survival/r/joint_reference.R tests/survival/r
#
# Fits lme(y ~ time, random = ~ time | id, method = "ML") (random intercept and slope, unstructured
# covariance, as the joint model's longitudinal part) on
#   orthodont: nlme::Orthodont, distance ~ age | Subject (R's own data, written to orthodont.csv);
#   burden:    joint_burden.csv, ln burden at scans of 60 patients simulated by
#              tests/survival/joint_dgp.py (seed 2019; time in years = days / 365.25).
# and lme(y ~ ns(time, df = 2), random = ~ ns(time, df = 2) | id, method = "ML") (the joint
# model's `time_basis: spline`: a natural cubic spline of time, random effects on its intercept
# and both coefficients) on
#   stein:     joint_stein.csv, ln(total true volume + 0.1 mL) at the scans of 80 lung patients of
#              the project's simulator (tumorburden.synth.trial.simulate_trial, seed 2019):
#              Stein-shaped burden, shrinking then regrowing.
# Writes <dir>/joint_reference.csv: dataset, statistic, value (one number a row), versions first.
suppressPackageStartupMessages({library(nlme); library(splines)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
rows <- list()
add <- function(dataset, statistic, value) {
  rows[[length(rows) + 1]] <<- data.frame(dataset = dataset, statistic = statistic, value = as.numeric(value))
}
add(R.version.string, "R_version", 0)
add(as.character(packageVersion("nlme")), "nlme_version", 0)

orth <- as.data.frame(nlme::Orthodont)
orth$Subject <- as.character(orth$Subject)
write.csv(orth[, c("Subject", "age", "distance", "Sex")], file.path(out, "orthodont.csv"), row.names = FALSE)
burden <- read.csv(file.path(out, "joint_burden.csv"))
data <- list(
  orthodont = data.frame(id = orth$Subject, time = orth$age, y = orth$distance),
  burden = data.frame(id = burden$patient_id, time = burden$years, y = burden$y)
)
ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12)
for (name in names(data)) {
  fit <- lme(y ~ time, random = ~ time | id, data = data[[name]], method = "ML", control = ctrl)
  fe <- fixef(fit)
  se <- sqrt(diag(vcov(fit)))
  vc <- as.matrix(getVarCov(fit))
  add(name, "beta_intercept", fe[1]); add(name, "beta_time", fe[2])
  add(name, "se_intercept", se[1]); add(name, "se_time", se[2])
  add(name, "sd_intercept", sqrt(vc[1, 1])); add(name, "sd_slope", sqrt(vc[2, 2]))
  add(name, "corr_intercept_slope", vc[1, 2] / sqrt(vc[1, 1] * vc[2, 2]))
  add(name, "sigma", fit$sigma)
  add(name, "loglik", as.numeric(logLik(fit)))
  add(name, "n_obs", nrow(data[[name]])); add(name, "n_groups", length(unique(data[[name]]$id)))
  print(summary(fit))
}
stein <- read.csv(file.path(out, "joint_stein.csv"))
stein <- data.frame(id = stein$patient_id, time = stein$years, y = stein$y)
fit <- lme(y ~ ns(time, df = 2), random = ~ ns(time, df = 2) | id, data = stein, method = "ML", control = ctrl)
labels <- c("intercept", "ns1", "ns2")
fe <- fixef(fit)
se <- sqrt(diag(vcov(fit)))
vc <- as.matrix(getVarCov(fit))
for (a in 1:3) {
  add("stein", paste0("beta_", labels[a]), fe[a]); add("stein", paste0("se_", labels[a]), se[a])
  add("stein", paste0("sd_", labels[a]), sqrt(vc[a, a]))
  for (b in seq_len(a - 1)) add("stein", paste0("corr_", labels[a], "_", labels[b]), vc[a, b] / sqrt(vc[a, a] * vc[b, b]))
}
basis <- ns(stein$time, df = 2)
add("stein", "knot_1", attr(basis, "knots")[1])
add("stein", "boundary_lo", attr(basis, "Boundary.knots")[1]); add("stein", "boundary_hi", attr(basis, "Boundary.knots")[2])
# the basis itself, inside and beyond the boundary knots (where ns is linear)
at <- c(-0.2, 0, 0.3, 1, 2.5)
nsb <- predict(basis, at)
for (i in seq_along(at)) for (k in 1:2) add("stein", sprintf("ns%d_at_%g", k, at[i]), nsb[i, k])
add("stein", "sigma", fit$sigma)
add("stein", "loglik", as.numeric(logLik(fit)))
add("stein", "n_obs", nrow(stein)); add("stein", "n_groups", length(unique(stein$id)))
print(summary(fit))
write.csv(do.call(rbind, rows), file.path(out, "joint_reference.csv"), row.names = FALSE)
