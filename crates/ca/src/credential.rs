//! Workload credentials: how the control plane knows who is asking.
//!
//! On Kubernetes a workload proves who it is with its service-account token. On one machine
//! the platform is `bosun up`: it holds a [`TokenKey`], mints one token per workload
//! ([`TokenKey::mint`]) and hands it to that workload's proxy in a file only the mesh's
//! user can read. The token has the shape of a Kubernetes service-account token (a JWT
//! whose subject is `system:serviceaccount:<namespace>:<account>`, audience `istio-ca`,
//! as Istio's agent sends it), signed with the key (HS256), so only a holder of the key can
//! make one. The control plane reads the same key and checks every token with
//! [`TokenKey::authenticate`]; what it then gives the caller is bound to the [`Caller`].

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::identity::Identity;

/// The request header a workload's token travels in (`Bearer <token>`), as Istio's agent
/// sends it to the CA and to xDS.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// The audience of a token meant for the mesh CA (Istio's `istio-ca`).
pub const TOKEN_AUDIENCE: &str = "istio-ca";

/// Who signs local workload tokens.
const TOKEN_ISSUER: &str = "bosun";

/// A Kubernetes service-account subject: `system:serviceaccount:<namespace>:<account>`.
const SUBJECT_PREFIX: &str = "system:serviceaccount:";

/// Bytes of secret in a token key.
const KEY_BYTES: usize = 32;

/// Why a caller is not authenticated, or a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no credential: send the workload's token as `authorization: Bearer <token>` (bosun \
         up hands each proxy one; see `bosun proxy --token-file`)"
    )]
    Missing,
    #[error("the authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("the workload token is not valid: {0}")]
    Invalid(String),
    #[error("cannot read the token key {path}: {source}")]
    ReadKey {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the token key {path}: {source}")]
    WriteKey {
        path: String,
        source: std::io::Error,
    },
    #[error("the token key {0} does not hold {KEY_BYTES} bytes of base64")]
    BadKey(String),
    #[error("the system's random number generator failed")]
    Random,
}

impl CredentialError {
    /// The gRPC status a refused call answers with.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::unauthenticated(self.to_string())
    }
}

/// The workload a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub namespace: String,
    pub service_account: String,
}

impl Caller {
    /// Whether `identity` is this caller's own (its trust domain is the CA's to check).
    pub fn owns(&self, identity: &Identity) -> bool {
        identity.namespace == self.namespace && identity.service_account == self.service_account
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SUBJECT_PREFIX}{}:{}",
            self.namespace, self.service_account
        )
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
}

/// Tells who sent a request from its headers: local tokens here, service-account tokens on
/// Kubernetes.
pub trait Authenticate: Send + Sync {
    fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, CredentialError>;
}

impl Authenticate for TokenKey {
    fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, CredentialError> {
        TokenKey::authenticate(self, headers)
    }
}

/// The secret that signs and checks local workload tokens.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CredentialError> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let mut secret = vec![0u8; KEY_BYTES];
        provider
            .secure_random
            .fill(&mut secret)
            .map_err(|_| CredentialError::Random)?;
        Self::from_secret(secret)
    }

    fn from_secret(secret: Vec<u8>) -> Result<Self, CredentialError> {
        let invalid =
            |error: jsonwebtoken::errors::Error| CredentialError::Invalid(error.to_string());
        Ok(Self {
            encoding: EncodingKey::from_secret(&secret).map_err(invalid)?,
            decoding: DecodingKey::from_secret(&secret).map_err(invalid)?,
            secret,
        })
    }

    /// The key in `path` (base64 text).
    pub fn load(path: &Path) -> Result<Self, CredentialError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialError::ReadKey {
            path: path.display().to_string(),
            source,
        })?;
        let secret = STANDARD
            .decode(text.trim())
            .ok()
            .filter(|secret| secret.len() == KEY_BYTES)
            .ok_or_else(|| CredentialError::BadKey(path.display().to_string()))?;
        Self::from_secret(secret)
    }

    /// The key in `path`, made and written there (readable by its owner only) when the file
    /// does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, CredentialError> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate()?;
        write_private(path, STANDARD.encode(&key.secret).as_bytes()).map_err(|source| {
            CredentialError::WriteKey {
                path: path.display().to_string(),
                source,
            }
        })?;
        Ok(key)
    }

    /// A token for the workloads of `namespace` running as `service_account`. It does not
    /// expire: it is as good as the key, which lives as long as the mesh run.
    pub fn mint(&self, namespace: &str, service_account: &str) -> String {
        let claims = Claims {
            iss: TOKEN_ISSUER.to_string(),
            sub: format!("{SUBJECT_PREFIX}{namespace}:{service_account}"),
            aud: TOKEN_AUDIENCE.to_string(),
            iat: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        };
        // Encoding HS256 claims of plain strings cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The caller whose token `token` is.
    pub fn verify(&self, token: &str) -> Result<Caller, CredentialError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|error| CredentialError::Invalid(error.to_string()))?
            .claims;
        let (namespace, service_account) = claims
            .sub
            .strip_prefix(SUBJECT_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .filter(|(namespace, account)| !namespace.is_empty() && !account.is_empty())
            .ok_or_else(|| {
                CredentialError::Invalid(format!(
                    "subject {:?} is not {SUBJECT_PREFIX}<namespace>:<account>",
                    claims.sub
                ))
            })?;
        Ok(Caller {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        })
    }

    /// The caller a request's `authorization: Bearer` header proves.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, CredentialError> {
        let value = headers
            .get(AUTHORIZATION_HEADER)
            .ok_or(CredentialError::Missing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(CredentialError::NotBearer)?;
        self.verify(token.trim())
    }
}

/// Writes `contents` to a new file only its owner can read.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // An existing file keeps its mode through open(): set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION_HEADER, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_minted_token_names_its_workload() {
        let key = TokenKey::generate().unwrap();
        let token = key.mint("shop", "cart");
        let caller = key
            .authenticate(&headers(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(caller.namespace, "shop");
        assert_eq!(caller.service_account, "cart");
        assert!(caller.owns(&Identity::new("cluster.local", "shop", "cart")));
        assert!(!caller.owns(&Identity::new("cluster.local", "shop", "admin")));
    }

    #[test]
    fn tokens_of_another_key_or_tampered_are_refused() {
        let key = TokenKey::generate().unwrap();
        let other = TokenKey::generate().unwrap();
        assert!(key.verify(&other.mint("shop", "cart")).is_err());
        let token = key.mint("shop", "cart");
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged_claims = STANDARD
            .encode(r#"{"iss":"bosun","sub":"system:serviceaccount:shop:admin","aud":"istio-ca","iat":1}"#)
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        assert!(
            key.verify(&format!("{head}.{forged_claims}.{signature}"))
                .is_err()
        );
        // alg none: no signature at all.
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        assert!(
            key.verify(&format!("{none_header}.{forged_claims}."))
                .is_err()
        );
        assert!(matches!(
            key.authenticate(&HeaderMap::new()),
            Err(CredentialError::Missing)
        ));
        assert!(matches!(
            key.authenticate(&headers(&token)),
            Err(CredentialError::NotBearer)
        ));
    }

    #[test]
    fn a_key_written_once_is_read_back_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token-key");
        let first = TokenKey::load_or_create(&path).unwrap();
        let again = TokenKey::load_or_create(&path).unwrap();
        assert!(again.verify(&first.mint("a", "b")).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(
            TokenKey::load(&path),
            Err(CredentialError::BadKey(_))
        ));
    }
}
