//! `certs`: a CA and a serving certificate for a Service.

use super::{Error, Outcome};
use crate::certs::{self, CertError};
use crate::cli::CertsArgs;

pub fn write(args: &CertsArgs) -> Result<Outcome, Error> {
    certs::check_dns_label("service", &args.service)?;
    certs::check_dns_label("namespace", &args.namespace)?;
    let sans = args
        .sans
        .iter()
        .map(|san| certs::San::parse(san))
        .collect::<Result<Vec<_>, _>>()?;
    let names = certs::names_with(&args.service, &args.namespace, &sans);
    let existing = if args.force {
        certs::Existing::Replace
    } else {
        certs::Existing::Refuse
    };
    let written = certs::generate(&names, &args.service, args.days)
        .and_then(|generated| certs::write(&args.out, &generated, existing))
        .map_err(|e| match e {
            CertError::Exists { .. } => Error::Input(format!(
                "{e}. The ca.crt there may be the CA in your webhook configurations' caBundle, which a \
                 renewal keeps in the bundle until every replica serves the new certificate \
                 (certs/README.md): write to another --out directory, or pass --force to replace them"
            )),
            e => Error::Certs(e),
        })?;
    println!(
        "wrote {}, {} and {}",
        written.ca_cert.display(),
        written.cert.display(),
        written.key.display()
    );
    println!(
        "the certificate is valid for {} days for: {}",
        args.days,
        names.join(", ")
    );
    Ok(Outcome::Success)
}
