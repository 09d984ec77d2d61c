//! `ServiceEntry`: adds a service (hosts, ports, endpoints) to the mesh's registry.

use serde::Deserialize;

use super::common::WorkloadSelector;
use crate::protocol::Protocol;

/// The `spec` of a ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntry {
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "addresses::deserialize")]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    pub location: Option<Location>,
    pub resolution: Option<Resolution>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub export_to: Vec<String>,
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

impl ServiceEntry {
    /// The resolution, with Istio's default (`NONE`) when unset.
    pub fn resolution(&self) -> Resolution {
        self.resolution.unwrap_or(Resolution::None)
    }

    /// The location, with Istio's default (`MESH_EXTERNAL`) when unset.
    pub fn location(&self) -> Location {
        self.location.unwrap_or(Location::MeshExternal)
    }
}

/// A port of the service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    /// Kept wide so out-of-range values get Istio's validation message.
    pub number: u32,
    pub name: String,
    pub protocol: Option<String>,
    pub target_port: Option<u32>,
}

impl ServicePort {
    /// The protocol: declared, else implied by the name prefix (`http-web`), as in Istio.
    pub fn protocol(&self) -> Protocol {
        Protocol::of_port(self.protocol.as_deref(), &self.name)
    }
}

/// Whether the service is part of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    MeshExternal,
    MeshInternal,
}

/// How the proxy finds the service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
    DynamicDns,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Static => "STATIC",
            Self::Dns => "DNS",
            Self::DnsRoundRobin => "DNS_ROUND_ROBIN",
            Self::DynamicDns => "DYNAMIC_DNS",
        }
    }
}

/// An inline endpoint of a ServiceEntry (the same shape as a WorkloadEntry spec).
pub type Endpoint = super::workload_entry::WorkloadEntry;

mod addresses {
    //! `addresses: [1.2.3.4, 2001:db8::]` — in a YAML flow sequence a plain scalar ending in
    //! `:` before `]` or `,` reads as a one-key mapping (`{"2001:db8:": null}`). Go's YAML
    //! reads it as the string Kubernetes users mean, so the address is put back together.

    use std::fmt;

    use serde::Deserializer;
    use serde::de::{self, MapAccess, SeqAccess, Visitor};

    struct Address(String);

    impl<'de> de::Deserialize<'de> for Address {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(AddressVisitor)
        }
    }

    struct AddressVisitor;

    impl<'de> Visitor<'de> for AddressVisitor {
        type Value = Address;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IP address or CIDR block")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Address, E> {
            Ok(Address(value.to_owned()))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Address, A::Error> {
            let invalid =
                || de::Error::custom("expected an IP address or CIDR block, found a mapping");
            let Some((key, value)) = map.next_entry::<String, Option<de::IgnoredAny>>()? else {
                return Err(invalid());
            };
            if value.is_some() || map.next_key::<de::IgnoredAny>()?.is_some() {
                return Err(invalid());
            }
            Ok(Address(format!("{key}:")))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of IP addresses or CIDR blocks")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
                let mut addresses = Vec::new();
                while let Some(Address(address)) = seq.next_element()? {
                    addresses.push(address);
                }
                Ok(addresses)
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}
