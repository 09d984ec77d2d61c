//! What `bosun up` hands each proxy so the control plane knows it: the mesh root (written
//! by the control plane into the run folder) and a token for the workload's own identity,
//! in a file readable by this user only. `bosun up` plays the platform's part here (on
//! Kubernetes: the service-account token the kubelet mounts); docs/security.md has the
//! threat model.

use std::path::{Path, PathBuf};

use bosun_ca::{ROOT_CERT_FILE, TokenKey};
use bosun_control_plane::TOKEN_KEY_FILE;

use super::plan::WorkloadPlan;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot make the mesh's token key in {dir}: {source}")]
    Key {
        dir: PathBuf,
        source: bosun_ca::CredentialError,
    },
    #[error("cannot write the token of {workload} to {path}: {source}")]
    Token {
        workload: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The run folder's credentials: the key tokens are signed with, shared with the control
/// plane through the folder (`--identity-dir`).
#[derive(Debug)]
pub struct MeshCredentials {
    dir: PathBuf,
    key: TokenKey,
}

impl MeshCredentials {
    /// Makes (or reads back) the token key in `dir`, the control plane's identity folder.
    pub fn in_dir(dir: &Path) -> Result<Self, CredentialsError> {
        let key = TokenKey::load_or_create(&dir.join(TOKEN_KEY_FILE)).map_err(|source| {
            CredentialsError::Key {
                dir: dir.to_path_buf(),
                source,
            }
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
        })
    }

    /// Where the control plane publishes the mesh root.
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join(ROOT_CERT_FILE)
    }

    /// The workload's token, and the file (this user's only) it was written to.
    pub fn token_for(
        &self,
        workload: &WorkloadPlan,
    ) -> Result<(String, PathBuf), CredentialsError> {
        let account = workload.service_account.as_deref().unwrap_or("default");
        let token = self.key.mint(&workload.namespace, account);
        let path = self.dir.join(format!("{}.token", workload.file_stem()));
        bosun_ca::credential::write_private(&path, token.as_bytes()).map_err(|source| {
            CredentialsError::Token {
                workload: workload.display_name(),
                path: path.clone(),
                source,
            }
        })?;
        Ok((token, path))
    }

    /// Where a workload's certificate agent serves Envoy.
    pub fn sds_socket(&self, workload: &WorkloadPlan) -> PathBuf {
        self.dir.join(format!("{}.sds.sock", workload.file_stem()))
    }
}
