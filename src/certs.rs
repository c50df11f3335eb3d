//! `meshguard certs`: a CA and a serving certificate for the webhook Service, written as PEM
//! files, with the caBundle (base64 of the CA PEM) printed on stdout for the webhook
//! configurations (`certificates.existingSecret.caBundle` in the Helm chart).
//!
//! Private keys are created with mode 0600. Existing files are not replaced without `--force`.

use crate::tls;
use base64::Engine as _;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook Service.
    #[arg(long, default_value = "meshguard")]
    pub service: String,
    /// Namespace of the webhook Service.
    #[arg(long, default_value = "meshguard")]
    pub namespace: String,
    /// Directory to write ca.pem, ca-key.pem, tls.pem and tls-key.pem into.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Validity of the serving certificate in days (the CA lives one day longer).
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Kubernetes cluster DNS domain, for the `<service>.<namespace>.svc.<domain>` name.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Replace existing files in --out.
    #[arg(long)]
    pub force: bool,
}

/// Why `meshguard certs` failed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("--{flag}: {value:?} is not a valid DNS label (lowercase letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)")]
    Label { flag: &'static str, value: String },
    #[error("--cluster-domain: {0:?} is not a valid DNS name")]
    Domain(String),
    #[error("--days: must be between 1 and 36500, got {0}")]
    Days(i64),
    #[error("{0} already exists; pass --force to replace it or choose another --out")]
    Exists(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// File names inside `--out`.
pub(crate) const CA_CERT: &str = "ca.pem";
pub(crate) const CA_KEY: &str = "ca-key.pem";
pub(crate) const CERT: &str = "tls.pem";
pub const KEY: &str = "tls-key.pem";

/// What was written.
#[derive(Clone, Debug)]
pub struct Written {
    /// DNS names of the serving certificate.
    pub names: Vec<String>,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Base64 of the CA certificate PEM: the webhook configurations' `caBundle`.
    pub ca_bundle: String,
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The names the apiserver and in-cluster clients may use for the Service:
/// `<svc>.<ns>.svc` (what the apiserver dials), `<svc>.<ns>.svc.<domain>`, `<svc>.<ns>`, `<svc>`.
pub(crate) fn service_names(
    service: &str,
    namespace: &str,
    cluster_domain: &str,
) -> Result<Vec<String>, CertsError> {
    if !is_dns_label(service) {
        return Err(CertsError::Label {
            flag: "service",
            value: service.to_owned(),
        });
    }
    if !is_dns_label(namespace) {
        return Err(CertsError::Label {
            flag: "namespace",
            value: namespace.to_owned(),
        });
    }
    let domain = cluster_domain.trim_end_matches('.');
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(is_dns_label) {
        return Err(CertsError::Domain(cluster_domain.to_owned()));
    }
    Ok(vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{domain}"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ])
}

/// Generate the CA and serving certificate and write them into `args.out`.
pub fn generate(args: &CertsArgs) -> Result<Written, CertsError> {
    let names = service_names(&args.service, &args.namespace, &args.cluster_domain)?;
    if !(1..=36500).contains(&args.days) {
        return Err(CertsError::Days(args.days));
    }
    let paths = [CA_CERT, CA_KEY, CERT, KEY].map(|f| args.out.join(f));
    if !args.force {
        if let Some(p) = paths.iter().find(|p| p.exists()) {
            return Err(CertsError::Exists(p.display().to_string()));
        }
    }
    let generated = tls::generate(&names, args.days)?;
    std::fs::create_dir_all(&args.out).map_err(|source| CertsError::Write {
        path: args.out.display().to_string(),
        source,
    })?;
    let [ca_cert, ca_key, cert, key] = paths;
    write_file(&ca_cert, generated.ca_cert_pem.as_bytes(), false)?;
    write_file(&ca_key, generated.ca_key_pem.as_bytes(), true)?;
    write_file(&cert, generated.cert_pem.as_bytes(), false)?;
    write_file(&key, generated.key_pem.as_bytes(), true)?;
    Ok(Written {
        names,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(&generated.ca_cert_pem),
        ca_cert,
        ca_key,
        cert,
        key,
    })
}

/// Write `data` to `path`; private files get mode 0600 (also when replacing an existing file).
fn write_file(path: &Path, data: &[u8], private: bool) -> Result<(), CertsError> {
    let err = |source| CertsError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mode = if private { 0o600 } else { 0o644 };
        options.mode(mode);
        let mut file = options.open(path).map_err(err)?;
        // `mode` applies only to new files: tighten a replaced one too.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(err)?;
        file.write_all(data).map_err(err)?;
        file.sync_all().map_err(err)
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        let mut file = options.open(path).map_err(err)?;
        file.write_all(data).map_err(err)?;
        file.sync_all().map_err(err)
    }
}

/// Run the command: the caBundle goes to stdout (for `$(meshguard certs)`), the rest to stderr.
pub fn run(args: CertsArgs) -> crate::exit::Exit {
    match generate(&args) {
        Ok(w) => {
            eprintln!(
                "meshguard certs: wrote {} and {} (CA), {} and {} (serving certificate for {}), valid {} days",
                w.ca_cert.display(),
                w.ca_key.display(),
                w.cert.display(),
                w.key.display(),
                w.names.join(", "),
                args.days,
            );
            eprintln!(
                "Create the Secret:  kubectl -n {ns} create secret tls {svc}-tls --cert={cert} --key={key}",
                ns = args.namespace,
                svc = args.service,
                cert = w.cert.display(),
                key = w.key.display(),
            );
            eprintln!("caBundle (base64 of {}):", w.ca_cert.display());
            println!("{}", w.ca_bundle);
            crate::exit::Exit::Ok
        }
        Err(e) => {
            eprintln!("meshguard certs: {e}");
            crate::exit::Exit::Error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_every_form_of_the_service() {
        assert_eq!(
            service_names("guard", "sec", "cluster.local").expect("names"),
            vec![
                "guard.sec.svc",
                "guard.sec.svc.cluster.local",
                "guard.sec",
                "guard"
            ]
        );
    }

    #[test]
    fn invalid_labels_are_rejected() {
        for bad in ["", "Guard", "-guard", "guard-", "gu_ard", &"a".repeat(64)] {
            let err = service_names(bad, "sec", "cluster.local").unwrap_err();
            assert!(err.to_string().starts_with("--service: "), "{bad:?}: {err}");
        }
        let err = service_names("guard", "Sec", "cluster.local").unwrap_err();
        assert!(err.to_string().starts_with("--namespace: "), "{err}");
        let err = service_names("guard", "sec", "bad..domain").unwrap_err();
        assert!(err.to_string().starts_with("--cluster-domain: "), "{err}");
    }
}
