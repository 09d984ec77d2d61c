//! What requests read: the compiled route tables and clusters, swapped whole on every
//! config change and read lock-free.

use std::collections::HashMap;
use std::sync::Arc;

use crate::routing::RouteTable;
use crate::upstream::Cluster;

/// Every RDS route table and every cluster, by name.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub routes: HashMap<String, Arc<RouteTable>>,
    pub clusters: HashMap<String, Arc<Cluster>>,
}
