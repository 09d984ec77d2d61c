//! Compiled routing: route tables with precompiled matchers, built once per config
//! update and read lock-free by every request.

mod actions;
mod domain;
mod filter_config;
mod fraction;
mod hash_policy;
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
pub use hash_policy::{HashCookie, HashInput, HashMethod, HashPolicy, HashSource, RequestHash};
pub use matcher::{
    HeaderMatch, HeaderSource, PathMatch, QueryMatch, RequestView, RouteMatch, ValueMatch,
    full_match_regex,
};
pub use retry::{AttemptFailure, DEFAULT_BACKOFF_BASE, RetryOn, RetryPolicy};
pub use table::{
    DirectResponse, MirrorPolicy, Route, RouteAction, RouteTable, SelectedCluster, VirtualHost,
    WeightedClusters,
};
