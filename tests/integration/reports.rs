//! The report and leader-election flags of `serve` and `audit`, as the binary parses them.
//! (The writer and the Lease loop run against a real kube-apiserver in tests/reports_e2e.)

use clap::Parser;
use meshguard::cli::{Cli, Command};
use meshguard::policy_report::ReportApi;
use meshguard::report_writer::ReportsSetting;
use std::time::Duration;

fn serve(args: &[&str]) -> Result<meshguard::serve::ServeConfig, clap::Error> {
    let mut argv = vec!["meshguard", "serve"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv)?.command {
        Command::Serve(a) => Ok(a.config()),
        _ => unreachable!(),
    }
}

#[test]
fn serve_report_flags() {
    let default = serve(&[]).expect("defaults");
    assert_eq!(
        default.reports,
        ReportsSetting::Auto,
        "wgpolicyk8s when served"
    );
    assert!(default.leader_elect);
    assert_eq!(
        default.lease_timing,
        meshguard::lease::LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    );
    for (flag, want) in [
        ("wgpolicyk8s", ReportsSetting::Api(ReportApi::Wgpolicyk8s)),
        ("openreports", ReportsSetting::Api(ReportApi::OpenReports)),
        ("none", ReportsSetting::Off),
    ] {
        assert_eq!(serve(&["--reports", flag]).expect(flag).reports, want);
    }
    let err = serve(&["--reports", "kyverno"]).expect_err("unknown API");
    assert!(err.to_string().contains("wgpolicyk8s"), "{err}");
    let c = serve(&[
        "--leader-elect=false",
        "--leader-elect-lease-duration",
        "30s",
        "--leader-elect-renew-deadline",
        "20s",
        "--leader-elect-retry-period",
        "5s",
    ])
    .expect("lease flags");
    assert!(!c.leader_elect);
    assert_eq!(c.lease_timing.lease_duration, Duration::from_secs(30));
    assert_eq!(c.lease_timing.renew_deadline, Duration::from_secs(20));
    assert_eq!(c.lease_timing.retry_period, Duration::from_secs(5));
}

#[test]
fn audit_write_reports_flag() {
    let parse = |args: &[&str]| {
        let mut argv = vec!["meshguard", "audit"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Audit(a)) => Ok(a.write_reports),
            Ok(_) => unreachable!(),
            Err(e) => Err(e),
        }
    };
    assert_eq!(parse(&[]).expect("default"), None, "read-only by default");
    assert_eq!(
        parse(&["--write-reports", "wgpolicyk8s"]).expect("wgpolicyk8s"),
        Some(ReportApi::Wgpolicyk8s)
    );
    assert_eq!(
        parse(&["--write-reports", "openreports"]).expect("openreports"),
        Some(ReportApi::OpenReports)
    );
    assert!(parse(&["--write-reports", "none"]).is_err());
}

/// Timings client-go would refuse are refused before any listener opens.
#[tokio::test]
async fn serve_refuses_a_renew_deadline_not_below_the_lease_duration() {
    let mut config = crate::common::serve_args(&[
        "--leader-elect-lease-duration",
        "10s",
        "--leader-elect-renew-deadline",
        "10s",
    ]);
    config.no_cluster = true;
    let err = match meshguard::serve::start(&config).await {
        Ok(_) => panic!("bad lease timings accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("--leader-elect-lease-duration 10s must be greater than --leader-elect-renew-deadline 10s"),
        "{err}"
    );
    // Without leader election the timings do not matter.
    let mut ok = crate::common::serve_args(&[
        "--leader-elect=false",
        "--leader-elect-lease-duration",
        "10s",
        "--leader-elect-renew-deadline",
        "10s",
    ]);
    ok.no_cluster = true;
    meshguard::serve::start(&ok)
        .await
        .expect("starts")
        .shutdown()
        .await;
}
