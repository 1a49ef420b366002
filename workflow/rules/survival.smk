# Kaplan-Meier, log-rank, Cox (uni/multivariable, landmark, time-varying), cox.zph, discrimination
# and Table 1 per cohort and endpoint. burden.parquet gives the scan schedule (time-varying Cox,
# landmark eligibility) and the RECIST sum of diameters (C-index comparison).


rule survival:
    input:
        features=f"{R}/tables/features.parquet",
        burden=f"{R}/tables/burden.parquet",
        clinical=CLINICAL_TSV,
    output:
        km=report(f"{R}/survival/km.csv", caption="../report/table_km.rst", category="Tables", subcategory="Survival"),
        km_summary=f"{R}/survival/km_summary.csv",
        survival_at=f"{R}/survival/survival_at.csv",
        logrank=report(
            f"{R}/survival/logrank.csv", caption="../report/table_logrank.rst", category="Tables", subcategory="Survival"
        ),
        cox=report(f"{R}/survival/cox.csv", caption="../report/table_cox.rst", category="Tables", subcategory="Survival"),
        zph=f"{R}/survival/zph.csv",
        performance=report(
            f"{R}/survival/performance.csv",
            caption="../report/table_performance.rst",
            category="Tables",
            subcategory="Survival",
        ),
        td_auc=f"{R}/survival/td_auc.csv",
        c_index_difference=f"{R}/survival/c_index_difference.csv",
        table1=f"{R}/survival/table1.csv",
        exclusions=f"{R}/survival/exclusions.csv",
    log:
        f"{R}/logs/survival.log",
    params:
        settings=settings("survival", without=PREDICTION_KEYS + DYNAMIC_KEYS + JOINT_KEYS),  # workflow_plan.py
        out=lambda wc, output: str(Path(output.km).parent),
    conda:
        ENV
    shell:
        "tumorburden survival --features={input.features:q} --burden={input.burden:q} --clinical={input.clinical:q}"
        " --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"


# Prediction models (TRIPOD): per cohort x endpoint x model set, bootstrap optimism-corrected
# validation, calibration at horizons, Brier/IPA/AUC(t), decision curves, model comparison and RMST;
# on the synthetic trial also the true model's C and slope beside each set's.
rule survival_prediction:
    input:
        features=f"{R}/tables/features.parquet",
        burden=f"{R}/tables/burden.parquet",
        clinical=CLINICAL_TSV,
        truth=f"{R}/truth/patients.parquet" if STUDY.synthetic else [],
    output:
        validation=report(
            f"{R}/survival/validation.csv", caption="../report/table_validation.rst", category="Tables",
            subcategory="Prediction model",
        ),
        calibration=report(
            f"{R}/survival/calibration.csv", caption="../report/table_calibration.rst", category="Tables",
            subcategory="Prediction model",
        ),
        score=report(
            f"{R}/survival/score.csv", caption="../report/table_score.rst", category="Tables",
            subcategory="Prediction model",
        ),
        decision_curve=f"{R}/survival/decision_curve.csv",
        model_comparison=report(
            f"{R}/survival/model_comparison.csv", caption="../report/table_model_comparison.rst", category="Tables",
            subcategory="Prediction model",
        ),
        rmst=f"{R}/survival/rmst.csv",
        rmst_contrast=f"{R}/survival/rmst_contrast.csv",
        tripod_summary=report(
            f"{R}/survival/tripod_summary.csv", caption="../report/table_tripod_summary.rst", category="Tables",
            subcategory="Prediction model",
        ),
        truth_comparison=f"{R}/survival/truth_comparison.csv" if STUDY.synthetic else [],
    log:
        f"{R}/logs/survival_prediction.log",
    params:
        settings=settings("survival", without=DYNAMIC_KEYS + JOINT_KEYS),
        out=lambda wc, output: str(Path(output.validation).parent),
        truth=lambda wc, input: [f"--truth={input.truth}"] if input.truth else [],
    conda:
        ENV
    shell:
        "tumorburden prediction --features={input.features:q} --burden={input.burden:q} --clinical={input.clinical:q}"
        " {params.truth:q} --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"


# Joint model of ln burden and survival (survival.joint) per cohort x endpoint, and every patient's
# dynamic survival prediction at each of its scans.
rule survival_joint:
    input:
        features=f"{R}/tables/features.parquet",
        burden=f"{R}/tables/burden.parquet",
        clinical=CLINICAL_TSV,
    output:
        model=report(f"{R}/survival/joint_model.csv", caption="../report/table_joint_model.rst", category="Tables",
                     subcategory="Joint model"),
        predictions=f"{R}/survival/joint_predictions.parquet",
    log:
        f"{R}/logs/survival_joint.log",
    benchmark:
        f"{R}/benchmarks/survival_joint.tsv"
    params:
        settings=settings("survival", without=PREDICTION_KEYS + DYNAMIC_KEYS),
    conda:
        ENV
    shell:
        "tumorburden joint --features={input.features:q} --burden={input.burden:q} --clinical={input.clinical:q}"
        " --model={output.model:q} --predictions={output.predictions:q} --settings={params.settings:q} > {log:q} 2>&1"


# Dynamic prediction: the landmark super-model (and the baseline-only Cox model) predict survival
# over the next landmark_window_days at every scan; their dynamic accuracy (Brier, IPA, AUC per
# landmark), with the other dynamic models' predictions (the dynamic_prediction schema's columns:
# the joint model's) scored beside them.
rule survival_dynamic:
    input:
        features=f"{R}/tables/features.parquet",
        burden=f"{R}/tables/burden.parquet",
        clinical=CLINICAL_TSV,
        extra=[rules.survival_joint.output.predictions],
    output:
        landmark_model=report(
            f"{R}/survival/landmark_model.csv", caption="../report/table_landmark_model.rst", category="Tables",
            subcategory="Dynamic prediction",
        ),
        predictions=f"{R}/survival/dynamic_predictions.parquet",
        predictions_csv=f"{R}/survival/dynamic_predictions.csv",
        dynamic_accuracy=report(
            f"{R}/survival/dynamic_accuracy.csv", caption="../report/table_dynamic_accuracy.rst", category="Tables",
            subcategory="Dynamic prediction",
        ),
    log:
        f"{R}/logs/survival_dynamic.log",
    benchmark:
        f"{R}/benchmarks/survival_dynamic.tsv"
    params:
        settings=settings("survival", without=PREDICTION_KEYS),
        out=lambda wc, output: str(Path(output.landmark_model).parent),
        extra=lambda wc, input: [f"--predictions={p}" for p in input.extra],
    conda:
        ENV
    shell:
        "tumorburden dynamic --features={input.features:q} --burden={input.burden:q} --clinical={input.clinical:q}"
        " {params.extra:q} --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"
