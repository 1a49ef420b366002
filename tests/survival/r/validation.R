# Reference numbers from rms::validate.cph for tests/survival/test_validation.py.
#
#   Rscript tests/survival/r/validation.R tests/survival/r [B]
#
# writes <dir>/validation_reference.csv: dataset, model, index, apparent, optimism, corrected, B (one row
# per index of validate(cph, B)), with R and package versions in rows of dataset "version".
# lung.csv, melanoma.csv (reference.R) and pbc.csv (score_reference.R: the 312 randomised
# patients, event = death) are copies of the same data. Models (complete cases, Efron ties):
#   lung: age + sex + ph.ecog;  melanoma: log(thickness) + ulcer + age + sex;
#   pbc: age + log(bili) + albumin + edema + log(protime).
suppressPackageStartupMessages({library(rms)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
B <- if (length(args) > 1) as.integer(args[2]) else 1000L
pbc <- survival::pbc[!is.na(survival::pbc$trt), ]  # the 312 randomised patients, as score_reference.R's pbc.csv
pbc$event <- as.integer(pbc$status == 2)
lung <- survival::lung  # as reference.R writes lung.csv and melanoma.csv
lung$event <- as.integer(lung$status == 2)
mel <- MASS::Melanoma
mel$event <- as.integer(mel$status == 1)
models <- list(
  lung = list(data = lung, f = Surv(time, event) ~ age + sex + ph.ecog),
  melanoma = list(data = mel, f = Surv(time, event) ~ log(thickness) + ulcer + age + sex),
  pbc = list(data = pbc, f = Surv(time, event) ~ age + log(bili) + albumin + edema + log(protime)))
rows <- list(data.frame(dataset = "version", model = R.version.string, index = "rms",
                        apparent = NA, optimism = NA, corrected = NA, B = NA),
             data.frame(dataset = "version", model = as.character(packageVersion("rms")), index = "rms_version",
                        apparent = NA, optimism = NA, corrected = NA, B = NA))
for (name in names(models)) {
  m <- models[[name]]
  d <- m$data[complete.cases(m$data[, all.vars(m$f)]), ]
  fit <- cph(m$f, data = d, x = TRUE, y = TRUE)
  set.seed(20261202)
  v <- validate(fit, B = B)
  rows[[length(rows) + 1]] <- data.frame(dataset = name, model = deparse(m$f[[3]]), index = rownames(v),
                                         apparent = v[, "index.orig"], optimism = v[, "optimism"],
                                         corrected = v[, "index.corrected"], B = v[, "n"])
  # cph stops Newton-Raphson at a relative change of 1e-4 in log L: the likelihood-based indices
  # are flat there, but g (linear in the coefficients) moves in the 4th digit; g of the converged fit:
  full <- coxph(m$f, data = d, control = coxph.control(eps = 1e-10, toler.chol = 1e-12))
  rows[[length(rows) + 1]] <- data.frame(dataset = name, model = deparse(m$f[[3]]), index = "g_converged",
                                         apparent = GiniMd(full$linear.predictors), optimism = NA,
                                         corrected = NA, B = NA)
}
write.csv(do.call(rbind, rows), file.path(out, "validation_reference.csv"), row.names = FALSE, na = "NA")
