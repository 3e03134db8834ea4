// Test engines: the conformance suite is compiled for a database server only when its URL is
// given (`TIDEFS_TEST_MYSQL`, `TIDEFS_TEST_POSTGRES`, written by `scripts/services.sh start`),
// so a run without servers has fewer tests rather than tests that pass without running. A URL
// that is given but unreachable fails those tests.
fn main() {
    for (var, cfg) in [
        ("TIDEFS_TEST_MYSQL", "tidefs_test_mysql"),
        ("TIDEFS_TEST_POSTGRES", "tidefs_test_postgres"),
        ("TIDEFS_TEST_S3", "tidefs_test_s3"),
        ("TIDEFS_TEST_TIKV", "tidefs_test_tikv"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
