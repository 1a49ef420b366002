# Reference numbers from rms::calibrate (cmethod "KM") and the smooth calibration curve of Austin,
# Harrell & van Klaveren (2020) for tests/survival/test_calibration.py.
#
#   Rscript tests/survival/r/calibration_reference.R tests/survival/r [B]
#
# B bootstrap replicates (1000 when not given) for lung at 365 days, the case whose optimism the
# tests compare within Monte-Carlo error; the other cases run calibrate with B = 2 only because it
# needs a bootstrap to report its groups (their optimism rows are not compared). The tests re-run
# the script live with B = 2 and compare the rows that do not depend on the bootstrap.
# reads <dir>/lung.csv, melanoma.csv, pbc.csv (written by reference.R and score_reference.R) and
# writes <dir>/calibration_reference.csv: dataset, horizon_days, analysis, key, statistic, value
# (long, one number a row), with R and package versions in the rows of analysis "version".
# grouped: calibrate(cph(..., surv = TRUE, time.inc = u), cmethod = "KM", u = u, m = m, B = B)
#   per group (key G1..Gg): mean.predicted, KM, std.err, n, index.orig, training, test,
#   mean.optimism, KM.corrected; plus the cut-points (analysis "cuts").
# predicted: each patient's S(u) from cph (attr "predicted" of calibrate), key = row in the CSV;
#   predicted_converged: the same from coxph run to convergence (cph stops at eps = 1e-4).
# smooth: Cox model of the outcome on rcs(cll, 3), cll = log(-log S(u)) of cph's predicted S(u),
#   S(u | cll) from survfit: ICI, E50, E90 (Austin et al.'s Appendix code) and the observed S(u) at
#   five predicted S(u); statistic *_cph as Austin et al. (cph + survest), the others with the
#   calibration model fitted by coxph to convergence (the numbers the tests hold to 1e-7).
suppressPackageStartupMessages({library(rms)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
B <- if (length(args) > 1) as.integer(args[2]) else 1000L
rows <- list()
add <- function(dataset, horizon, analysis, key, statistic, value) {
  rows[[length(rows) + 1]] <<- data.frame(dataset = dataset, horizon_days = horizon, analysis = analysis,
                                          key = as.character(key), statistic = statistic, value = as.numeric(value))
}
add("-", 0, "version", R.version.string, "R", 0)
add("-", 0, "version", as.character(packageVersion("rms")), "rms_version", 0)
add("-", 0, "version", as.character(packageVersion("survival")), "survival_version", 0)

lung <- read.csv(file.path(out, "lung.csv"))
mel <- read.csv(file.path(out, "melanoma.csv"))
pbc <- read.csv(file.path(out, "pbc.csv"))
models <- list(
  list(name = "lung", data = lung, terms = c("age", "sex", "ph.ecog", "ph.karno"),
       formula = Surv(time, event) ~ age + sex + ph.ecog + ph.karno, u = c(180, 365), m = 50),
  list(name = "melanoma", data = mel, terms = c("thickness", "ulcer", "age", "sex"),
       formula = Surv(time, event) ~ log(thickness) + ulcer + age + sex, u = 1825, m = 50),
  list(name = "pbc", data = pbc, terms = c("age", "edema", "bili", "albumin", "protime"),
       formula = Surv(time, event) ~ age + edema + log(bili) + albumin + log(protime), u = 1825, m = 60))
for (mod in models) {
  d <- mod$data[complete.cases(mod$data[, c("time", "event", mod$terms)]), ]
  for (u in mod$u) {
    fit <- cph(mod$formula, data = d, x = TRUE, y = TRUE, surv = TRUE, time.inc = u)
    set.seed(1)
    b <- if (mod$name == "lung" && u == 365) B else 2L
    add(mod$name, u, "bootstrap", "-", "B", b)
    cal <- calibrate(fit, cmethod = "KM", u = u, m = mod$m, B = b)
    pred <- attr(cal, "predicted")
    for (i in seq_along(pred)) add(mod$name, u, "predicted", rownames(d)[i], "survival", pred[i])
    conv <- coxph(mod$formula, data = d, ties = "efron", control = coxph.control(eps = 1e-10, iter.max = 100))
    pc <- summary(survfit(conv, newdata = d), times = u)$surv[1, ]
    for (i in seq_along(pc)) add(mod$name, u, "predicted_converged", rownames(d)[i], "survival", pc[i])
    g <- max(1, floor(nrow(d) / mod$m))
    cuts <- unique(quantile(c(0, 1, pred), seq(0, 1, length = g + 1), na.rm = TRUE))
    for (i in seq_along(cuts)) add(mod$name, u, "cuts", i, "cut", cuts[i])
    for (i in seq_len(nrow(cal))) {
      for (s in c("mean.predicted", "KM", "std.err", "n", "index.orig", "training", "test",
                  "mean.optimism", "KM.corrected")) add(mod$name, u, "grouped", paste0("G", i), s, cal[i, s])
    }
    # Austin, Harrell & van Klaveren (2020), Appendix: calibration model on rcs(cll, 3)
    cc <- data.frame(time = d$time, event = d$event, pred = pred, cll = log(-log(pred)))
    calfit <- cph(Surv(time, event) ~ rcs(cll, 3), data = cc, x = TRUE, y = TRUE, surv = TRUE)
    diff <- abs(survest(calfit, newdata = cc, times = u)$surv - pred)
    add(mod$name, u, "smooth", "-", "ICI_cph", mean(diff))
    add(mod$name, u, "smooth", "-", "E50_cph", median(diff))
    add(mod$name, u, "smooth", "-", "E90_cph", quantile(diff, 0.9))
    knots <- attr(rcs(cc$cll, 3), "parms")
    for (i in seq_along(knots)) add(mod$name, u, "smooth", i, "knot", knots[i])
    basis <- rcspline.eval(cc$cll, knots = knots, inclx = TRUE)
    cc$s1 <- basis[, 1]
    cc$s2 <- basis[, 2]
    calconv <- coxph(Surv(time, event) ~ s1 + s2, data = cc, ties = "efron",
                     control = coxph.control(eps = 1e-10, iter.max = 100))
    diff <- abs(summary(survfit(calconv, newdata = cc), times = u)$surv[1, ] - pred)
    add(mod$name, u, "smooth", "-", "ICI", mean(diff))
    add(mod$name, u, "smooth", "-", "E50", median(diff))
    add(mod$name, u, "smooth", "-", "E90", quantile(diff, 0.9))
    grid <- quantile(pred, c(0.1, 0.3, 0.5, 0.7, 0.9))
    gb <- rcspline.eval(log(-log(grid)), knots = knots, inclx = TRUE)
    at <- summary(survfit(calconv, newdata = data.frame(s1 = gb[, 1], s2 = gb[, 2])), times = u)$surv[1, ]
    for (i in seq_along(grid)) {
      add(mod$name, u, "smooth", i, "predicted", grid[i])
      add(mod$name, u, "smooth", i, "observed", at[i])
    }
  }
}
write.csv(do.call(rbind, rows), file.path(out, "calibration_reference.csv"), row.names = FALSE)
