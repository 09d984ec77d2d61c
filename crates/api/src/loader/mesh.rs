//! Loads `mesh.yaml`: one MeshConfig document, its type errors with file:line, and the
//! fields set that Bosun does not act on.

use std::path::Path;

use super::documents::split_documents;
use super::{LoadError, LoadErrorKind, parse_error};
use crate::extension_providers::{provider_errors, unsupported_provider_fields};
use crate::mesh::{KNOWN_FIELDS, MeshConfig};
use crate::origin::Origin;

/// A MeshConfig as loaded, and the paths of fields that are set but not acted on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeshConfigLoad {
    pub config: MeshConfig,
    pub unsupported: Vec<String>,
}

/// Reads `text` (the file `file`) as a MeshConfig. An empty file is the default config.
pub fn load_mesh_config(text: &str, file: &Path) -> Result<MeshConfigLoad, Box<LoadError>> {
    let documents = split_documents(text);
    let Some(document) = documents.first() else {
        return Ok(MeshConfigLoad::default());
    };
    if documents.len() > 1 {
        return Err(Box::new(LoadError {
            origin: Origin::new(file, documents[1].start_line),
            resource: None,
            kind: LoadErrorKind::Schema,
            message: "a mesh config is one document; put the settings in one".to_owned(),
        }));
    }
    let fields: serde_json::Map<String, serde_json::Value> = serde_saphyr::from_str(&document.text)
        .map_err(|error| parse_error(&error, document, file, None, LoadErrorKind::Syntax))?;
    let config: MeshConfig = serde_saphyr::from_str(&document.text)
        .map_err(|error| parse_error(&error, document, file, None, LoadErrorKind::Schema))?;
    let mut unsupported: Vec<String> = fields
        .keys()
        .filter(|key| !KNOWN_FIELDS.contains(&key.as_str()))
        .cloned()
        .collect();
    unsupported.extend(unsupported_provider_fields(&config.extension_providers));
    if let Some((field, reason)) = provider_errors(&config.extension_providers)
        .into_iter()
        .next()
    {
        // The provider's own line, when its name is on one.
        let index: usize = field
            .trim_start_matches("extensionProviders[")
            .split(']')
            .next()
            .and_then(|index| index.parse().ok())
            .unwrap_or(0);
        let line = config
            .extension_providers
            .get(index)
            .filter(|provider| !provider.name.is_empty())
            .and_then(|provider| line_naming(&document.text, &provider.name))
            .map_or(document.start_line, |line| {
                document.start_line + u32::try_from(line).unwrap_or(0)
            });
        return Err(Box::new(LoadError {
            origin: Origin::new(file, line),
            resource: None,
            kind: LoadErrorKind::Schema,
            message: format!("{field}: {reason}"),
        }));
    }
    Ok(MeshConfigLoad {
        config,
        unsupported,
    })
}

/// The 0-based line of `text` that names `name` (`name: ext-authz`).
fn line_naming(text: &str, name: &str) -> Option<usize> {
    text.lines().position(|line| {
        line.trim_start()
            .trim_start_matches("- ")
            .strip_prefix("name:")
            .is_some_and(|value| value.trim().trim_matches(['"', '\'']) == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::OutboundMode;

    #[test]
    fn known_fields_are_typed_and_others_reported() {
        let loaded = load_mesh_config(
            "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nenableAutoMtls: true\naccessLogFile: /dev/stdout\ndefaultConfig: {concurrency: 2}\n",
            Path::new("mesh.yaml"),
        )
        .expect("loads");
        assert_eq!(
            loaded.config.outbound_traffic_policy.map(|p| p.mode),
            Some(OutboundMode::RegistryOnly)
        );
        assert_eq!(loaded.unsupported, ["accessLogFile", "defaultConfig"]);
    }

    #[test]
    fn a_wrong_value_names_its_line() {
        let error = load_mesh_config(
            "enableAutoMtls: true\noutboundTrafficPolicy:\n  mode: SOMETIMES\n",
            Path::new("mesh.yaml"),
        )
        .expect_err("refused");
        assert_eq!(error.origin.to_string(), "mesh.yaml:3");
        assert!(error.message.contains("SOMETIMES"), "{}", error.message);
    }

    #[test]
    fn a_bad_provider_names_its_line() {
        let error = load_mesh_config(
            "enableAutoMtls: true\nextensionProviders:\n- name: good\n  envoyExtAuthzGrpc: {service: a, port: 9000}\n- name: authz\n  envoyExtAuthzHttp: {service: a, port: 70000}\n",
            Path::new("mesh.yaml"),
        )
        .expect_err("refused");
        assert_eq!(error.origin.to_string(), "mesh.yaml:5");
        assert!(
            error
                .message
                .starts_with("extensionProviders[1].envoyExtAuthzHttp.port"),
            "{}",
            error.message
        );
    }

    #[test]
    fn an_empty_file_is_the_default() {
        let loaded = load_mesh_config("# nothing yet\n", Path::new("mesh.yaml")).expect("loads");
        assert_eq!(loaded, MeshConfigLoad::default());
    }
}
