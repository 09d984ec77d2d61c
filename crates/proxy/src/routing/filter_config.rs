//! Per-route settings of HTTP filters (Envoy's `typed_per_filter_config`), keyed by the
//! filter's name in the connection manager. The route table does not know the filters'
//! types: each filter finds its own settings by name and type.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Settings a route gives one filter, or `Disabled` to switch the filter off for it.
#[derive(Clone)]
pub enum FilterOverride {
    Config(Arc<dyn Any + Send + Sync>),
    Disabled,
}

#[derive(Clone, Default)]
pub struct FilterConfigs(Vec<(String, FilterOverride)>);

impl FilterConfigs {
    pub fn new(entries: Vec<(String, FilterOverride)>) -> Self {
        FilterConfigs(entries)
    }

    /// What the route says to the filter named `name`, when the setting is a `T`.
    pub fn get<T: Any>(&self, name: &str) -> Option<Override<'_, T>> {
        let (_, entry) = self.0.iter().find(|(key, _)| key == name)?;
        match entry {
            FilterOverride::Disabled => Some(Override::Disabled),
            FilterOverride::Config(config) => config.downcast_ref::<T>().map(Override::Config),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }
}

/// A route's word to one filter.
#[derive(Debug)]
pub enum Override<'a, T> {
    Config(&'a T),
    Disabled,
}

impl fmt::Debug for FilterConfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
