# Reference numbers for the landmark super-model (tests/survival/test_landmark.py), with the
# landmark data built here in R, independently of tumorburden.survival.landmark.
#
#   Rscript tests/survival/r/landmark_reference.R tests/survival/r
#
# Data: survival::pbcseq (312 PBC patients, serum bilirubin at repeated visits; event = death,
# status 2; transplant censored). The visits play the scans: "burden" = bilirubin, the
# "new lesion" flag = ascites seen at any visit so far. Writes <dir>/pbcseq.csv (the visits),
# <dir>/landmark_data.csv (the stacked landmark data, for the record) and
# <dir>/landmark_reference.csv: model, term, statistic, value (coef, robust and naive se, the
# predicted survival of a few stacked rows from survfit), with the
# R and survival versions in the rows of model "version".
#
# Landmark data (van Houwelingen 2007; dynpred's cutLM): at each s in LANDMARKS the patients
# with futime > s; covariates from their visits on or before s: lb = log(bili + 0.1) of the
# latest, slope = (lb latest - lb of the visit before it) per month (30.4375 days; 0 with one
# visit), newl = 1 if ascites at any visit so far; follow-up cut at s + W (event only if the
# death is by s + W). f1 = (s - s0) / (sL - s0), f2 = f1^2.
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
LANDMARKS <- c(0, 365, 730, 1095, 1460, 1825)
W <- 1825
OFFSET <- 0.1
DPM <- 30.4375

v <- survival::pbcseq
v <- v[order(v$id, v$day), ]
write.csv(v[, c("id", "futime", "status", "day", "bili", "ascites", "age")], file.path(out, "pbcseq.csv"),
          row.names = FALSE, na = "")
pat <- v[!duplicated(v$id), c("id", "futime", "status", "age")]
stacked <- list()
for (s in LANDMARKS) {
  for (i in seq_len(nrow(pat))) {
    p <- pat[i, ]
    if (p$futime <= s) next
    seen <- v[v$id == p$id & v$day <= s, ]
    if (nrow(seen) == 0) next
    k <- nrow(seen)
    lb <- log(seen$bili + OFFSET)
    slope <- if (k >= 2) (lb[k] - lb[k - 1]) / ((seen$day[k] - seen$day[k - 1]) / DPM) else 0
    newl <- as.integer(any(!is.na(seen$ascites) & seen$ascites > 0))
    stacked[[length(stacked) + 1]] <- data.frame(
      id = p$id, landmark = s, tstop = min(p$futime, s + W),
      status = as.integer(p$status == 2 & p$futime <= s + W),
      lb = lb[k], slope = slope, newl = newl, age = p$age)
  }
}
lm <- do.call(rbind, stacked)
f1 <- (lm$landmark - min(LANDMARKS)) / (max(LANDMARKS) - min(LANDMARKS))
for (x in c("lb", "slope", "newl")) {
  lm[[paste0(x, ":f1")]] <- lm[[x]] * f1
  lm[[paste0(x, ":f2")]] <- lm[[x]] * f1^2
}
lm$f1 <- f1
lm$f2 <- f1^2
write.csv(lm, file.path(out, "landmark_data.csv"), row.names = FALSE)

rows <- list()
add <- function(model, term, statistic, value) {
  rows[[length(rows) + 1]] <<- data.frame(model = model, term = term, statistic = statistic,
                                          value = as.numeric(value))
}
add("version", R.version.string, "R", 0)
add("version", as.character(packageVersion("survival")), "survival_version", 0)
add("data", "rows", "n", nrow(lm))
add("data", "events", "n", sum(lm$status))
terms <- c("lb", "slope", "newl", "`lb:f1`", "`slope:f1`", "`newl:f1`", "`lb:f2`", "`slope:f2`", "`newl:f2`")
ctl <- coxph.control(eps = 1e-10, toler.chol = 1e-12, iter.max = 100)
# baseline hazard stratified by landmark (dynpred's stratified super-model)
fs <- coxph(as.formula(paste("Surv(landmark, tstop, status) ~", paste(terms, collapse = " + "),
                             "+ strata(landmark) + cluster(id)")), data = lm, ties = "efron", control = ctl)
# one baseline hazard on the original time scale, landmark effects f1 + f2 (dynpred's ipl*)
fm <- coxph(as.formula(paste("Surv(landmark, tstop, status) ~", paste(c(terms, "f1", "f2"), collapse = " + "),
                             "+ cluster(id)")), data = lm, ties = "efron", control = ctl)
for (m in list(list("strata", fs), list("smooth", fm))) {
  fit <- m[[2]]
  b <- coef(fit)
  se <- sqrt(diag(fit$var))
  naive <- sqrt(diag(fit$naive.var))
  for (j in seq_along(b)) {
    term <- gsub("`", "", names(b)[j])
    add(m[[1]], term, "coef", b[j])
    add(m[[1]], term, "robust_se", se[j])
    add(m[[1]], term, "se", naive[j])
  }
  add(m[[1]], "-", "loglik", fit$loglik[2])
}
# predicted survival from s to s + u (u = W/2, W) for a few stacked rows: survfit.coxph's curve for
# the row's covariates (Efron baseline, delayed entry), S(s + u) / S(s)
pick <- c(1, 300, 700, 1100, 1400, 1552)
for (m in list(list("strata", fs), list("smooth", fm))) {
  nd <- lm[pick, ]
  sf <- survfit(m[[2]], newdata = nd)
  for (k in seq_along(pick)) {
    s <- nd$landmark[k]
    curve <- sf[k]
    at <- summary(curve, times = c(s, s + W / 2, s + W), extend = TRUE)$surv
    for (u in c(W / 2, W)) {
      add(m[[1]], paste0("row", pick[k]), paste0("predicted_survival_", u),
          at[if (u == W) 3 else 2] / at[1])
    }
  }
}
write.csv(do.call(rbind, rows), file.path(out, "landmark_reference.csv"), row.names = FALSE)
