//! One ADS stream: a task that reads the proxy's requests and watches for new config,
//! and answers both through the stream's protocol state.

use std::sync::Arc;
use std::time::SystemTime;

use bosun_ca::Caller;
use envoy_types::pb::envoy::config::core::v3::Node;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::generator::Generator;
use crate::index::{ChangeHint, ProxyResources};
use crate::node::{NodeError, ProxyNode};
use crate::reply::Reply;
use crate::status::{ProxySyncStatus, StatusRegistry, StreamKind, TypeSyncStatus};

/// Why a stream ended with an error status.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the first request carries no node")]
    MissingNode,
    #[error("invalid node: {0}")]
    InvalidNode(#[from] NodeError),
    #[error(
        "node {node} is namespace {namespace:?}, service account {service_account:?}, but the \
         stream's credential is {caller}; a proxy may only ask for its own workload's config"
    )]
    NotTheCaller {
        node: String,
        namespace: String,
        service_account: String,
        caller: Caller,
    },
}

impl From<StreamError> for tonic::Status {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::NotTheCaller { .. } => tonic::Status::permission_denied(error.to_string()),
            _ => tonic::Status::invalid_argument(error.to_string()),
        }
    }
}

/// The node must be the workload the stream's credential proves (when there is one).
fn check_caller(node: &ProxyNode, caller: Option<&Caller>) -> Result<(), StreamError> {
    let Some(caller) = caller else {
        return Ok(());
    };
    let account = if node.service_account.is_empty() {
        "default"
    } else {
        node.service_account.as_str()
    };
    if node.namespace == caller.namespace && account == caller.service_account {
        Ok(())
    } else {
        Err(StreamError::NotTheCaller {
            node: node.id.clone(),
            namespace: node.namespace.clone(),
            service_account: account.to_string(),
            caller: caller.clone(),
        })
    }
}

/// The protocol side of a stream: state-of-the-world or delta.
pub(crate) trait StreamProtocol: Send + 'static {
    type Request: Send + 'static;
    const KIND: StreamKind;

    fn new(proxy_id: &str) -> Self;
    fn node(request: &Self::Request) -> Option<&Node>;
    /// The response a request calls for, if any.
    fn on_request(&mut self, request: Self::Request, resources: &ProxyResources) -> Option<Reply>;
    /// The responses a config change calls for, in push order; `hint`, when given, names
    /// every resource that may have changed.
    fn on_push(&mut self, resources: &ProxyResources, hint: Option<&ChangeHint>) -> Vec<Reply>;
    fn status(&self) -> Vec<TypeSyncStatus>;
}

/// What every stream shares with the server.
#[derive(Clone)]
pub(crate) struct StreamContext {
    pub(crate) generators: watch::Receiver<Arc<dyn Generator>>,
    pub(crate) registry: Arc<StatusRegistry>,
    pub(crate) connection_id: u64,
    /// The workload the stream's credential proves, when the server authenticates.
    pub(crate) caller: Option<Caller>,
}

pub(crate) type Outbound = mpsc::Sender<Result<Reply, tonic::Status>>;

/// Serves one stream until the proxy goes away or the response channel closes.
pub(crate) async fn serve<P, S>(mut requests: S, responses: Outbound, mut ctx: StreamContext)
where
    P: StreamProtocol,
    S: Stream<Item = Result<P::Request, tonic::Status>> + Unpin,
{
    let first = match requests.next().await {
        Some(Ok(request)) => request,
        Some(Err(status)) => {
            tracing::debug!(%status, "stream failed before its first request");
            return;
        }
        None => return,
    };
    let node = match P::node(&first)
        .ok_or(StreamError::MissingNode)
        .and_then(|node| ProxyNode::from_node(node).map_err(StreamError::from))
        .and_then(|node| check_caller(&node, ctx.caller.as_ref()).map(|()| node))
    {
        Ok(node) => node,
        Err(error) => {
            tracing::warn!(%error, "refusing ADS stream");
            // The proxy may already be gone; nothing more to do either way.
            let _ = responses.send(Err(error.into())).await;
            return;
        }
    };

    let mut protocol = P::new(&node.id);
    let registration = ctx.registry.register(ProxySyncStatus {
        connection_id: ctx.connection_id,
        proxy: node.clone(),
        stream: P::KIND,
        connected_since: SystemTime::now(),
        types: Vec::new(),
    });
    tracing::info!(proxy = %node.id, stream = ?P::KIND, user_agent = %node.user_agent, "proxy connected");

    // Clone the generator out of the watch: its borrow must not live across an await.
    // Dropped right away: a stream holding it would keep its whole snapshot alive after
    // the next config change.
    let mut resources = {
        let generator = Arc::clone(&ctx.generators.borrow_and_update());
        resources_for(generator.as_ref(), &node, &ProxyResources::default())
    };
    let mut generators_open = true;
    let mut next_request = Some(first);

    loop {
        if let Some(request) = next_request.take() {
            let response = protocol.on_request(request, &resources);
            registration.update(protocol.status());
            if let Some(response) = response
                && responses.send(Ok(response)).await.is_err()
            {
                break;
            }
        }

        tokio::select! {
            request = requests.next() => match request {
                Some(Ok(request)) => next_request = Some(request),
                Some(Err(status)) => {
                    tracing::debug!(proxy = %node.id, %status, "stream failed");
                    break;
                }
                None => break,
            },
            changed = ctx.generators.changed(), if generators_open => {
                if changed.is_err() {
                    // No more config will come; keep serving the last one.
                    generators_open = false;
                    continue;
                }
                let generator = Arc::clone(&ctx.generators.borrow_and_update());
                let hint = match incremental_update(generator.as_ref(), &node, &mut resources) {
                    Some(hint) => Some(hint),
                    None => {
                        resources = resources_for(generator.as_ref(), &node, &resources);
                        None
                    }
                };
                // Not held while a slow proxy reads: the next change may replace it.
                drop(generator);
                let pushes = protocol.on_push(&resources, hint.as_ref());
                registration.update(protocol.status());
                let mut closed = false;
                for response in pushes {
                    if responses.send(Ok(response)).await.is_err() {
                        closed = true;
                        break;
                    }
                }
                if closed {
                    break;
                }
            }
        }
    }
    tracing::info!(proxy = %node.id, stream = ?P::KIND, "proxy disconnected");
}

/// Everything `node` gets from `generator`, built in full.
fn resources_for(
    generator: &dyn Generator,
    node: &ProxyNode,
    previous: &ProxyResources,
) -> ProxyResources {
    match generator.incremental() {
        Some(incremental) => ProxyResources::build_split(
            incremental.shared(node),
            incremental.own(node),
            incremental.generation(),
            previous,
        ),
        None => ProxyResources::build(generator.generate_encoded(node), previous),
    }
}

/// Applies only what changed, when `generator` follows the one `resources` came from.
fn incremental_update(
    generator: &dyn Generator,
    node: &ProxyNode,
    resources: &mut ProxyResources,
) -> Option<ChangeHint> {
    let incremental = generator.incremental()?;
    let changes = incremental.shared_changes_since(resources.generation?, node)?;
    Some(resources.apply(
        changes,
        incremental.shared(node),
        incremental.own(node),
        incremental.generation(),
    ))
}
