//! Loads resources from YAML: a folder of files, each holding any number of documents.

mod documents;
mod duplicates;
mod error;
mod mesh;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_saphyr::MessageFormatter;

pub use error::{LoadDirError, LoadError, LoadErrorKind};
pub use mesh::{MeshConfigLoad, load_mesh_config};

use crate::local::LOCAL_API_VERSION;
use crate::meta::{Config, DEFAULT_NAMESPACE, ObjectMeta, ResourceRef};
use crate::networking;
use crate::origin::Origin;
use crate::resource::{Resource, api_group};
use crate::security;
use documents::{Document, split_documents};

/// What a load produced: the resources that loaded, and an error for each that did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadResult {
    pub resources: Vec<Resource>,
    pub errors: Vec<LoadError>,
}

impl LoadResult {
    /// No document was refused.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Loads every `*.yaml` / `*.yml` file directly in `dir` (not sub-folders), in name order.
///
/// A broken document is reported in [`LoadResult::errors`] and the rest still load; only a
/// folder or file that cannot be read at all is an `Err`.
pub fn load_dir(dir: &Path) -> Result<LoadResult, LoadDirError> {
    let read_dir_error = |source| LoadDirError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_error)? {
        let path = entry.map_err(read_dir_error)?.path();
        let is_yaml = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"));
        if is_yaml && path.is_file() && !crate::mesh::is_mesh_config(&path) {
            files.push(path);
        }
    }
    files.sort();

    let mut result = LoadResult::default();
    for file in files {
        let bytes = std::fs::read(&file).map_err(|source| LoadDirError::ReadFile {
            path: file.clone(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => load_documents(&text, &file, &mut result),
            Err(_) => result.errors.push(LoadError {
                origin: Origin::new(file, 1),
                resource: None,
                kind: LoadErrorKind::Syntax,
                message: "not a UTF-8 text file".to_owned(),
            }),
        }
    }
    duplicates::refuse_duplicates(&mut result);
    Ok(result)
}

/// Loads the documents of one YAML text; `file` is only used to name places in messages.
pub fn load_str(text: &str, file: &Path) -> LoadResult {
    let mut result = LoadResult::default();
    load_documents(text, file, &mut result);
    duplicates::refuse_duplicates(&mut result);
    result
}

fn load_documents(text: &str, file: &Path, result: &mut LoadResult) {
    for document in split_documents(text) {
        match load_document(&document, file) {
            Ok(resource) => result.resources.push(resource),
            Err(error) => result.errors.push(*error),
        }
    }
}

/// The fields every resource has, read leniently to decide how to read the rest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<RawMeta>,
}

/// `metadata` as written. Fields Bosun does not use (uid, resourceVersion, ...) are ignored.
#[derive(Deserialize, Default)]
struct RawMeta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

impl RawMeta {
    fn into_meta(self) -> ObjectMeta {
        ObjectMeta {
            name: self.name.unwrap_or_default(),
            namespace: self
                .namespace
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            labels: self.labels.unwrap_or_default(),
            annotations: self.annotations.unwrap_or_default(),
        }
    }
}

/// A whole document of a known kind, read strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TypedDocument<S> {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    metadata: Option<RawMeta>,
    spec: Option<S>,
    /// Written by Kubernetes; carried in exported resources, meaningless here.
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

/// The kinds Bosun reads into typed specs.
#[derive(Clone, Copy)]
enum KnownKind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    Sidecar,
    LocalWorkload,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
}

fn load_document(document: &Document, file: &Path) -> Result<Resource, Box<LoadError>> {
    let start = Origin::new(file, document.start_line);
    let header: Header = serde_saphyr::from_str(&document.text)
        .map_err(|error| parse_error(&error, document, file, None, LoadErrorKind::Syntax))?;
    let schema_error = |message: String, resource: Option<ResourceRef>| {
        Box::new(LoadError {
            origin: start.clone(),
            resource,
            kind: LoadErrorKind::Schema,
            message,
        })
    };
    let (Some(api_version), Some(kind)) = (header.api_version, header.kind) else {
        return Err(schema_error(
            "not a Kubernetes resource: `apiVersion` and `kind` are required".to_owned(),
            None,
        ));
    };
    let meta = header.metadata.unwrap_or_default().into_meta();

    let Some(known) = known_kind(&api_version, &kind)
        .map_err(|message| schema_error(message, reference(&kind, &meta)))?
    else {
        return Ok(Resource::Unsupported {
            kind,
            api_version,
            meta,
            origin: start,
        });
    };

    let resource = reference(&kind, &meta);
    match known {
        KnownKind::VirtualService => {
            load_typed(document, file, &api_version, &kind, resource).map(Resource::VirtualService)
        }
        KnownKind::DestinationRule => {
            load_typed(document, file, &api_version, &kind, resource).map(Resource::DestinationRule)
        }
        KnownKind::ServiceEntry => {
            load_typed(document, file, &api_version, &kind, resource).map(Resource::ServiceEntry)
        }
        KnownKind::WorkloadEntry => {
            load_typed(document, file, &api_version, &kind, resource).map(Resource::WorkloadEntry)
        }
        KnownKind::Sidecar => {
            load_typed(document, file, &api_version, &kind, resource).map(Resource::Sidecar)
        }
        KnownKind::LocalWorkload => {
            load_typed(document, file, &api_version, &kind, resource).map(Resource::LocalWorkload)
        }
        KnownKind::PeerAuthentication => load_typed(document, file, &api_version, &kind, resource)
            .map(Resource::PeerAuthentication),
        KnownKind::AuthorizationPolicy => load_typed(document, file, &api_version, &kind, resource)
            .map(Resource::AuthorizationPolicy),
        KnownKind::RequestAuthentication => {
            load_typed(document, file, &api_version, &kind, resource)
                .map(Resource::RequestAuthentication)
        }
    }
}

/// Which typed kind a document is; `Ok(None)` for kinds Bosun keeps as unsupported, `Err`
/// for a kind Bosun knows written with a version it does not.
fn known_kind(api_version: &str, kind: &str) -> Result<Option<KnownKind>, String> {
    let group = api_group(api_version);
    let version = api_version.rsplit('/').next().unwrap_or_default();
    let known = match (group, kind) {
        (networking::GROUP, "VirtualService") => KnownKind::VirtualService,
        (networking::GROUP, "DestinationRule") => KnownKind::DestinationRule,
        (networking::GROUP, "ServiceEntry") => KnownKind::ServiceEntry,
        (networking::GROUP, "WorkloadEntry") => KnownKind::WorkloadEntry,
        (networking::GROUP, "Sidecar") => KnownKind::Sidecar,
        ("bosun.dev", "LocalWorkload") => KnownKind::LocalWorkload,
        (security::GROUP, "PeerAuthentication") => KnownKind::PeerAuthentication,
        (security::GROUP, "AuthorizationPolicy") => KnownKind::AuthorizationPolicy,
        (security::GROUP, "RequestAuthentication") => KnownKind::RequestAuthentication,
        _ => return Ok(None),
    };
    let version_known = match known {
        KnownKind::LocalWorkload => api_version == LOCAL_API_VERSION,
        KnownKind::PeerAuthentication
        | KnownKind::AuthorizationPolicy
        | KnownKind::RequestAuthentication => security::VERSIONS.contains(&version),
        _ => networking::VERSIONS.contains(&version),
    };
    if version_known {
        Ok(Some(known))
    } else {
        let expected = match known {
            KnownKind::LocalWorkload => LOCAL_API_VERSION.to_owned(),
            KnownKind::PeerAuthentication
            | KnownKind::AuthorizationPolicy
            | KnownKind::RequestAuthentication => security::VERSIONS
                .iter()
                .map(|v| format!("{}/{v}", security::GROUP))
                .collect::<Vec<_>>()
                .join(", "),
            _ => networking::VERSIONS
                .iter()
                .map(|v| format!("{}/{v}", networking::GROUP))
                .collect::<Vec<_>>()
                .join(", "),
        };
        Err(format!(
            "unsupported apiVersion `{api_version}` for {kind} (expected {expected})"
        ))
    }
}

fn load_typed<S: DeserializeOwned>(
    document: &Document,
    file: &Path,
    api_version: &str,
    kind: &str,
    resource: Option<ResourceRef>,
) -> Result<Config<S>, Box<LoadError>> {
    let typed: TypedDocument<S> = serde_saphyr::from_str(&document.text).map_err(|error| {
        parse_error(
            &error,
            document,
            file,
            resource.clone(),
            LoadErrorKind::Schema,
        )
    })?;
    let origin = Origin::new(file, document.start_line);
    let meta = typed.metadata.unwrap_or_default().into_meta();
    let required = |field: &str| {
        Box::new(LoadError {
            origin: origin.clone(),
            resource: resource.clone(),
            kind: LoadErrorKind::Schema,
            message: match &resource {
                Some(_) => format!("{field}: Required value"),
                None => format!("{kind}: {field}: Required value"),
            },
        })
    };
    if meta.name.is_empty() {
        return Err(required("metadata.name"));
    }
    let Some(spec) = typed.spec else {
        return Err(required("spec"));
    };
    Ok(Config {
        meta,
        api_version: api_version.to_owned(),
        spec,
        origin,
    })
}

fn reference(kind: &str, meta: &ObjectMeta) -> Option<ResourceRef> {
    (!meta.name.is_empty()).then(|| ResourceRef {
        kind: kind.to_owned(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
    })
}

/// Turns a parser error into a [`LoadError`] at the file line of the offending node.
fn parse_error(
    error: &serde_saphyr::Error,
    document: &Document,
    file: &Path,
    resource: Option<ResourceRef>,
    kind: LoadErrorKind,
) -> Box<LoadError> {
    let error = error.without_snippet();
    let line = error
        .location()
        .filter(|location| location.line() > 0)
        .map(|location| document.file_line(location.line()))
        .unwrap_or(document.start_line);
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(error)
        .into_owned();
    let source_line = error
        .location()
        .and_then(|location| usize::try_from(location.line()).ok())
        .and_then(|line| document.text.lines().nth(line.checked_sub(1)?));
    let message = name_the_field(message, source_line);
    Box::new(LoadError {
        origin: Origin::new(file, line),
        resource,
        kind,
        message,
    })
}

/// Type errors from the parser ("invalid i32") do not say which field they are about;
/// the offending line does: `weight: ten` gives "weight: invalid value `ten`: expected
/// an integer".
fn name_the_field(message: String, source_line: Option<&str>) -> String {
    if message.contains('`') {
        // Already names what it is about (unknown field `x`, missing field `y`, ...).
        return message;
    }
    let Some((key, value)) = source_line
        .map(|line| line.trim_start().trim_start_matches("- "))
        .and_then(|line| line.split_once(':'))
    else {
        return message;
    };
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() || key.contains(' ') {
        return message;
    }
    let expected = match message.as_str() {
        m if m.starts_with("invalid i") || m.starts_with("invalid u") => "expected an integer",
        m if m.starts_with("invalid f") => "expected a number",
        m if m.starts_with("invalid bool") => "expected true or false",
        _ => return format!("{key}: {message}"),
    };
    format!("{key}: invalid value `{value}`: {expected}")
}
