//! Compiled routing: route tables with precompiled matchers, built once per config
//! update and read lock-free by every request.

mod actions;
mod domain;
mod filter_config;
mod fraction;
mod matcher;
mod retry;
mod route_index;
mod table;

pub use actions::{
    AppendAction, HeaderAdd, HeaderMutations, HeaderRules, PathRedirect, PathRewrite, Redirect,
    RedirectFrom, rewrite_path,
};
pub use domain::{DomainError, DomainIndex};
pub use filter_config::{FilterConfigs, FilterOverride, Override};
pub use fraction::Fraction;
pub use matcher::{
    HeaderMatch, HeaderSource, PathMatch, QueryMatch, RequestView, RouteMatch, ValueMatch,
    full_match_regex,
};
pub use retry::{AttemptFailure, DEFAULT_BACKOFF_BASE, RetryOn, RetryPolicy};
pub use table::{
    DirectResponse, MirrorPolicy, Route, RouteAction, RouteTable, SelectedCluster, VirtualHost,
    WeightedClusters,
};
