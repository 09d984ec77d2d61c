//! Compiled routing: route tables with precompiled matchers, built once per config
//! update and read lock-free by every request.

mod domain;
mod matcher;
mod table;

pub use domain::{DomainError, DomainIndex};
pub use matcher::{
    HeaderMatch, HeaderSource, PathMatch, RequestView, RouteMatch, ValueMatch, full_match_regex,
};
pub use table::{DirectResponse, Route, RouteAction, RouteTable, VirtualHost, WeightedClusters};
