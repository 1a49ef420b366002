# Reference numbers from R's survival package for tests/survival/test_r_parity.py.
#
#   Rscript tests/survival/r/reference.R tests/survival/r
#
# writes <dir>/lung.csv, <dir>/melanoma.csv (the data, so Python reads exactly what R used)
# and <dir>/reference.csv: dataset, analysis, key, statistic, value (long, one number a row),
# with R and package versions in the rows of analysis "version".
# heart.csv: survival::heart (Stanford heart transplant; time-varying transplant, (start, stop] rows).
# lung: NCCTG lung cancer data (survival::lung; status 1 = censored, 2 = dead).
# melanoma: MASS::Melanoma (status 1 = died of melanoma = event; 2 alive, 3 other death = censored).
suppressPackageStartupMessages({library(survival); library(MASS)})
has_maxstat <- requireNamespace("maxstat", quietly = TRUE)
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
rows <- list()
add <- function(dataset, analysis, key, statistic, value) {
  rows[[length(rows) + 1]] <<- data.frame(dataset = dataset, analysis = analysis, key = as.character(key),
                                          statistic = statistic, value = as.numeric(value))
}
add("-", "version", R.version.string, "survival", 0)
add("-", "version", as.character(packageVersion("survival")), "survival_version", 0)
add("-", "version", as.character(packageVersion("MASS")), "MASS_version", 0)
if (has_maxstat) add("-", "version", as.character(packageVersion("maxstat")), "maxstat_version", 0)

lung <- survival::lung
lung$event <- as.integer(lung$status == 2)
mel <- MASS::Melanoma
mel$event <- as.integer(mel$status == 1)
write.csv(lung[, c("inst", "time", "status", "event", "age", "sex", "ph.ecog", "ph.karno", "wt.loss")],
          file.path(out, "lung.csv"), row.names = FALSE, na = "")
write.csv(mel[, c("time", "status", "event", "sex", "age", "year", "thickness", "ulcer")],
          file.path(out, "melanoma.csv"), row.names = FALSE, na = "")
heart <- survival::heart  # Stanford heart transplant, counting-process (start, stop] rows
write.csv(heart[, c("id", "start", "stop", "event", "age", "year", "surgery", "transplant")],
          file.path(out, "heart.csv"), row.names = FALSE, na = "")
data <- list(lung = lung, melanoma = mel, heart = heart)

# Kaplan-Meier: curve, median with CI, survival at set times; both CI types
km <- function(name, formula, times) {
  d <- data[[name]]
  for (ct in c("log", "log-log")) {
    fit <- survfit(formula, data = d, conf.type = ct)
    q <- quantile(fit, probs = 0.5)
    grp <- if (is.null(fit$strata)) "all" else sub(".*=", "", names(fit$strata))
    for (i in seq_along(grp)) {
      key <- paste0(grp[i], "|", ct)
      add(name, "km_median", key, "median", q$quantile[i])
      add(name, "km_median", key, "lower", q$lower[i])
      add(name, "km_median", key, "upper", q$upper[i])
    }
    s <- summary(fit, times = times, extend = TRUE)
    g <- if (is.null(s$strata)) rep("all", length(s$time)) else sub(".*=", "", as.character(s$strata))
    for (i in seq_along(s$time)) {
      key <- paste0(g[i], "|", ct, "|", s$time[i])
      add(name, "km_at", key, "surv", s$surv[i])
      add(name, "km_at", key, "lower", s$lower[i])
      add(name, "km_at", key, "upper", s$upper[i])
      add(name, "km_at", key, "n_risk", s$n.risk[i])
    }
    if (is.null(fit$strata)) {  # the whole curve, at every time
      for (i in seq_along(fit$time)) {
        key <- paste0("all|", ct, "|", fit$time[i])
        add(name, "km_curve", key, "surv", fit$surv[i])
        add(name, "km_curve", key, "lower", fit$lower[i])
        add(name, "km_curve", key, "upper", fit$upper[i])
      }
    }
  }
}
km("lung", Surv(time, event) ~ 1, c(180, 365, 730))
km("lung", Surv(time, event) ~ sex, c(180, 365))
km("melanoma", Surv(time, event) ~ 1, c(1825, 3650))
km("melanoma", Surv(time, event) ~ ulcer, c(1825, 3650))

# Log-rank (survdiff), stratified log-rank, and the trend test for ordered groups computed
# from survdiff's observed, expected and variance with scores 1..k
logrank <- function(name, key, formula, trend = FALSE) {
  d <- data[[name]]
  sd <- survdiff(formula, data = d)
  add(name, "logrank", key, "chisq", sd$chisq)
  add(name, "logrank", key, "df", length(sd$n) - 1)
  add(name, "logrank", key, "p", pchisq(sd$chisq, length(sd$n) - 1, lower.tail = FALSE))
  if (trend) {
    obs <- if (is.matrix(sd$obs)) rowSums(sd$obs) else sd$obs
    ex <- if (is.matrix(sd$exp)) rowSums(sd$exp) else sd$exp
    w <- seq_along(obs)
    chi <- sum(w * (obs - ex))^2 / drop(t(w) %*% sd$var %*% w)
    add(name, "logrank", paste0(key, "|trend"), "chisq", chi)
    add(name, "logrank", paste0(key, "|trend"), "p", pchisq(chi, 1, lower.tail = FALSE))
  }
}
logrank("lung", "sex", Surv(time, event) ~ sex)
logrank("lung", "ph.ecog", Surv(time, event) ~ ph.ecog, trend = TRUE)
logrank("lung", "sex|strata(ph.ecog)", Surv(time, event) ~ sex + strata(ph.ecog))
logrank("lung", "ph.ecog|strata(sex)", Surv(time, event) ~ ph.ecog + strata(sex), trend = TRUE)
logrank("melanoma", "ulcer", Surv(time, event) ~ ulcer)
logrank("melanoma", "ulcer|strata(sex)", Surv(time, event) ~ ulcer + strata(sex))

# Cox models: coefficients, SEs, per-term Wald p, global LR / Wald / score tests, concordance,
# cox.zph (km transform, per term and global)
cox <- function(name, key, formula, ties) {
  d <- data[[name]]
  fit <- do.call("coxph", list(formula = formula, data = d, ties = ties))  # cox.zph re-reads the data from the call
  s <- summary(fit)
  k <- paste0(key, "|", ties)
  for (term in rownames(s$coefficients)) {
    add(name, "cox_term", paste0(k, "|", term), "coef", s$coefficients[term, "coef"])
    add(name, "cox_term", paste0(k, "|", term), "se", s$coefficients[term, "se(coef)"])
    add(name, "cox_term", paste0(k, "|", term), "p", s$coefficients[term, "Pr(>|z|)"])
  }
  add(name, "cox_model", k, "n", s$n)
  add(name, "cox_model", k, "events", s$nevent)
  add(name, "cox_model", k, "loglik", fit$loglik[2])
  add(name, "cox_model", k, "lr_chisq", 2 * diff(fit$loglik))
  add(name, "cox_model", k, "wald_chisq", fit$wald.test)  # summary() rounds it
  add(name, "cox_model", k, "score_chisq", fit$score)
  add(name, "cox_model", k, "df", s$logtest["df"])
  add(name, "cox_model", k, "concordance", fit$concordance["concordance"])
  z <- cox.zph(fit)
  for (term in rownames(z$table)) {
    add(name, "zph", paste0(k, "|", term), "chisq", z$table[term, "chisq"])
    add(name, "zph", paste0(k, "|", term), "df", z$table[term, "df"])
    add(name, "zph", paste0(k, "|", term), "p", z$table[term, "p"])
  }
}
for (ties in c("efron", "breslow")) {
  cox("lung", "age+sex+ph.ecog", Surv(time, event) ~ age + sex + ph.ecog, ties)
  cox("lung", "age+ph.ecog+strata(sex)", Surv(time, event) ~ age + ph.ecog + strata(sex), ties)
  cox("lung", "wt.loss", Surv(time, event) ~ wt.loss, ties)
  cox("melanoma", "log(thickness)+ulcer+age+sex", Surv(time, event) ~ log(thickness) + ulcer + age + sex, ties)
  cox("heart", "age+surgery+transplant", Surv(start, stop, event) ~ age + surgery + as.numeric(transplant), ties)
  cox("heart", "age+transplant+strata(surgery)", Surv(start, stop, event) ~ age + as.numeric(transplant) + strata(surgery), ties)
}

# Concordance of a single risk score (higher = higher risk): Harrell's and Uno's weighting
conc <- function(name, var) {
  d <- data[[name]]
  f <- as.formula(paste("Surv(time, event) ~", var))
  add(name, "concordance", paste0(var, "|harrell"), "c", concordance(f, data = d, reverse = TRUE)$concordance)
  add(name, "concordance", paste0(var, "|uno"), "c",
      concordance(f, data = d, reverse = TRUE, timewt = "n/G2")$concordance)
}
conc("lung", "age")
conc("lung", "ph.karno")
conc("melanoma", "thickness")

# Optimal cut-point by maximally selected log-rank statistics (package maxstat, when installed)
if (has_maxstat) {
  ms <- function(name, var) {
    d <- data[[name]]
    f <- as.formula(paste("Surv(time, event) ~", var))
    for (pm in c("Lau92", "Lau94")) {
      m <- maxstat::maxstat.test(f, data = d, smethod = "LogRank", pmethod = pm, minprop = 0.1, maxprop = 0.9)
      add(name, "maxstat", paste0(var, "|", pm), "statistic", m$statistic)
      add(name, "maxstat", paste0(var, "|", pm), "cutpoint", m$estimate)
      add(name, "maxstat", paste0(var, "|", pm), "p", m$p.value)
    }
  }
  ms("lung", "age")
  ms("melanoma", "thickness")
}

res <- do.call(rbind, rows)
write.csv(res, file.path(out, "reference.csv"), row.names = FALSE)
cat("wrote", nrow(res), "reference numbers to", file.path(out, "reference.csv"), "\n")
