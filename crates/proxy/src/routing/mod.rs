//! Compiled routing: route tables with precompiled matchers, built once per config
//! update and read lock-free by every request.

mod domain;
mod filter_config;
mod matcher;
mod retry;
mod table;

pub use domain::{DomainError, DomainIndex};
pub use filter_config::{FilterConfigs, FilterOverride, Override};
pub use matcher::{
    HeaderMatch, HeaderSource, PathMatch, RequestView, RouteMatch, ValueMatch, full_match_regex,
};
pub use retry::{AttemptFailure, DEFAULT_BACKOFF_BASE, RetryOn, RetryPolicy};
pub use table::{DirectResponse, Route, RouteAction, RouteTable, VirtualHost, WeightedClusters};
