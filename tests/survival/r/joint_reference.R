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
# Writes <dir>/joint_reference.csv: dataset, statistic, value (one number a row), versions first.
suppressPackageStartupMessages(library(nlme))
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
write.csv(do.call(rbind, rows), file.path(out, "joint_reference.csv"), row.names = FALSE)
