//! The SMTP connection to the `[outbox]` relay, the one way tollgate talks SMTP
//! (document deliveries, dunning notices, self-service sign-in links): lettre's
//! `SmtpConnection` with its rustls TLS (docs/configuration.md, docs/delivery.md).
//!
//! [`connect`] opens the connection, secures it as `smtp_tls` says (`none`,
//! `opportunistic` STARTTLS, required `starttls`, `implicit` TLS) against the CA of
//! `smtp_ca_file` or the Mozilla roots, and authenticates with `smtp_credentials_file`
//! (read at each connection, never logged; the config refuses credentials without
//! TLS). Every error names the relay and says what went wrong, so a delivery's `error`
//! tells the operator why nothing was sent.
//!
//! Must not: write MIME (lettre's builder does), or put a credential in an error or a log.

use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, SmtpConnection, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;

use crate::config::{Outbox, SmtpTls};

/// Connect, read and write timeout of an SMTP conversation.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS parameters for `host`: the certificates of `smtp_ca_file` only, else the
/// Mozilla roots; the certificate must name `host` (a DNS name or an IP address).
fn tls_parameters(ob: &Outbox, host: &str) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(host.to_owned());
    match &ob.smtp_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("outbox.smtp_ca_file {}: {e}", path.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("outbox.smtp_ca_file {}: {e}", path.display()))?;
            b = b
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        None => b = b.certificate_store(CertificateStore::WebpkiRoots),
    }
    b.build_rustls()
        .map_err(|e| format!("smtp TLS settings for {host}: {e}"))
}

/// Opens a connection to `ob.smtp`, secured and authenticated as configured; ready
/// for `MAIL FROM`. An `Err` means nothing was handed over.
pub fn connect(ob: &Outbox) -> Result<SmtpConnection, String> {
    let relay = ob.smtp.as_deref().ok_or("[outbox] has no smtp relay")?;
    let host = relay
        .rsplit_once(':')
        .map_or(relay, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let hello = ClientId::default();
    let wrapper = match ob.smtp_tls {
        SmtpTls::Implicit => Some(tls_parameters(ob, host)?),
        _ => None,
    };
    let mut conn = SmtpConnection::connect(relay, Some(TIMEOUT), &hello, wrapper.as_ref(), None)
        .map_err(|e| match ob.smtp_tls {
            SmtpTls::Implicit => format!("smtp {relay} (implicit TLS): {e}"),
            _ => format!("smtp {relay}: {e}"),
        })?;
    let starttls = match ob.smtp_tls {
        SmtpTls::Starttls if !conn.can_starttls() => {
            conn.abort();
            return Err(format!(
                "smtp {relay}: the relay does not offer STARTTLS and [outbox] smtp_tls = \
                 \"starttls\" requires it; nothing was sent"
            ));
        }
        SmtpTls::Starttls => true,
        SmtpTls::Opportunistic => conn.can_starttls(),
        SmtpTls::None | SmtpTls::Implicit => false,
    };
    if starttls {
        let params = tls_parameters(ob, host);
        if let Err(e) = params.and_then(|p| {
            conn.starttls(&p, &hello)
                .map_err(|e| format!("smtp {relay}: STARTTLS failed: {e}"))
        }) {
            conn.abort();
            return Err(e);
        }
    }
    if let Some(path) = &ob.smtp_credentials_file {
        let (user, password) = crate::config::read_smtp_credentials(path)
            .map_err(|e| format!("outbox.smtp_credentials_file {e}"))?;
        let creds = Credentials::new(user, password);
        if let Err(e) = conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds) {
            conn.abort();
            return Err(format!("smtp {relay}: authentication refused: {e}"));
        }
    }
    Ok(conn)
}
