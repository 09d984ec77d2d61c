//! Certificates in PEM: split a bundle into one PEM per certificate, keeping each one's
//! text as written, and read its DER.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// One certificate: its PEM text (one block, ending in a newline) and its DER.
#[derive(Debug, Clone)]
pub(crate) struct PemCertificate {
    pub pem: String,
    pub der: CertificateDer<'static>,
}

/// Every CERTIFICATE block of `text`, in order. Other blocks and text between blocks are
/// skipped; a block whose base64 does not decode is an error.
pub(crate) fn certificates(text: &str) -> Result<Vec<PemCertificate>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else {
            return Err(format!("certificate {} has no END line", found.len() + 1));
        };
        let end = start + length + END.len();
        let mut pem = rest[start..end].to_string();
        pem.push('\n');
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|error| {
            format!("certificate {} is not valid PEM: {error}", found.len() + 1)
        })?;
        found.push(PemCertificate { pem, der });
        rest = &rest[end..];
    }
    Ok(found)
}

/// The one certificate of `text`, or why there is not exactly one.
pub(crate) fn single_certificate(text: &str) -> Result<PemCertificate, String> {
    let mut found = certificates(text)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err("holds no PEM CERTIFICATE".to_string()),
        n => Err(format!("holds {n} certificates where one was expected")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_bundle_and_skips_other_text() {
        let first = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
        let second = rcgen::generate_simple_self_signed(vec!["b.example".to_string()]).unwrap();
        let bundle = format!(
            "# comment\n{}\n{}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            first.cert.pem(),
            second.cert.pem()
        );
        let found = certificates(&bundle).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].der, *first.cert.der());
        assert_eq!(found[1].der, *second.cert.der());
        assert_eq!(found[1].pem.trim(), second.cert.pem().trim());
        assert!(
            single_certificate(&bundle)
                .unwrap_err()
                .contains("2 certificates")
        );
    }

    #[test]
    fn rejects_broken_blocks() {
        assert!(certificates("-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
        assert!(
            certificates("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----").is_err()
        );
        assert!(
            single_certificate("nothing here")
                .unwrap_err()
                .contains("no PEM")
        );
    }
}
