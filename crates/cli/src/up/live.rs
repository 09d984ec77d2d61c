//! The live view of `bosun up`: the traffic table, what the control plane made of the
//! folder (errors in full, with file:line, until they are fixed) and what happened to the
//! mesh's processes. On a terminal it is redrawn in place; elsewhere each refresh prints a
//! traffic line, and config changes and events are printed once, when they happen.

use std::net::SocketAddr;
use std::time::Duration;

use bosun_control_plane::config_status::ConfigStatus;
use http::{HeaderMap, Uri};

use super::events::{EventLog, MeshEvent};
use super::table::{self, TrafficSources};
use crate::sample::client::HttpClient;
use crate::sample::serve::error_chain;

/// Events shown under the table on a terminal.
const EVENTS_SHOWN: usize = 6;
/// Config errors listed in full; more are counted.
const ERRORS_SHOWN: usize = 8;

/// What the view reads each refresh.
pub struct LiveView {
    pub traffic: TrafficSources,
    pub events: EventLog,
    /// The control plane's debug address, when the mesh has one.
    pub control_plane: Option<SocketAddr>,
}

/// What the control plane says of the folder, or why it cannot be asked.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigView {
    /// No control plane in this mesh.
    None,
    Served {
        generation: u64,
        resources: usize,
        errors: Vec<String>,
        warnings: usize,
    },
    Unreachable(String),
}

impl ConfigView {
    fn of(status: &ConfigStatus) -> Self {
        Self::Served {
            generation: status.generation,
            resources: status.resources.len(),
            errors: status.errors.clone(),
            warnings: status.warnings.len(),
        }
    }

    /// The lines shown for it; `debug` is where the details are.
    pub fn lines(&self, debug: Option<SocketAddr>) -> Vec<String> {
        let details = debug
            .map(|address| format!(" (details: http://{address}/debug/configz)"))
            .unwrap_or_default();
        match self {
            Self::None => Vec::new(),
            Self::Unreachable(why) => vec![format!(
                "control plane unreachable ({why}); proxies serve their last config meanwhile"
            )],
            Self::Served {
                generation,
                resources,
                errors,
                warnings,
            } => {
                let mut summary = format!("config: {resources} resources, generation {generation}");
                if !errors.is_empty() {
                    summary.push_str(&format!(
                        ", {} refused: the last good version of each keeps serving",
                        errors.len()
                    ));
                }
                if *warnings > 0 {
                    summary.push_str(&format!(", {warnings} warnings{details}"));
                }
                let mut lines = vec![summary];
                lines.extend(
                    errors
                        .iter()
                        .take(ERRORS_SHOWN)
                        .map(|error| format!("config error: {error}")),
                );
                if errors.len() > ERRORS_SHOWN {
                    lines.push(format!(
                        "config error: ... and {} more{details}",
                        errors.len() - ERRORS_SHOWN
                    ));
                }
                lines
            }
        }
    }
}

impl LiveView {
    async fn config(&self, client: &HttpClient) -> ConfigView {
        let Some(address) = self.control_plane else {
            return ConfigView::None;
        };
        let url: Uri = match format!("http://{address}/debug/configz").parse() {
            Ok(url) => url,
            Err(error) => return ConfigView::Unreachable(format!("{error}")),
        };
        match client.get(&url, HeaderMap::new()).await {
            Ok(response) if response.status.is_success() => {
                match serde_json::from_slice::<ConfigStatus>(&response.body) {
                    Ok(status) => ConfigView::of(&status),
                    Err(error) => ConfigView::Unreachable(format!("unreadable status: {error}")),
                }
            }
            Ok(response) => ConfigView::Unreachable(format!("it answered {}", response.status)),
            Err(error) => ConfigView::Unreachable(error_chain(&error)),
        }
    }
}

/// Shows the mesh every `refresh` until the future is dropped.
pub async fn show(view: LiveView, refresh: Duration, redraw: bool) {
    let client = HttpClient::new(None, Duration::from_millis(800));
    let mut previous_lines = 0;
    let mut events_seen = 0;
    let mut config_shown: Option<ConfigView> = None;
    let mut ticks = tokio::time::interval(refresh);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (rows, problems) = if view.traffic.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            view.traffic.rows().await
        };
        let config = view.config(&client).await;
        if redraw {
            let mut text = String::new();
            if !view.traffic.is_empty() {
                text.push_str(&table::render_table(&rows, &problems));
                text.push('\n');
            }
            for line in config.lines(view.control_plane) {
                text.push_str(&line);
                text.push('\n');
            }
            for event in view.events.newest(EVENTS_SHOWN) {
                text.push_str(&event.to_string());
                text.push('\n');
            }
            text.push_str("Ctrl-C stops the mesh");
            // Move up over the previous view and clear to the end of the screen.
            if previous_lines > 0 {
                print!("\x1b[{previous_lines}A\x1b[J");
            }
            println!("{text}");
            previous_lines = text.lines().count();
        } else {
            let (events, seen) = view.events.since(events_seen);
            events_seen = seen;
            events
                .iter()
                .for_each(|event: &MeshEvent| println!("{event}"));
            if config_shown.as_ref() != Some(&config) {
                for line in config.lines(view.control_plane) {
                    println!("{line}");
                }
                config_shown = Some(config);
            }
            if !view.traffic.is_empty() {
                println!("{}", table::render_line(&rows, &problems));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_are_listed_with_what_keeps_serving() {
        let view = ConfigView::Served {
            generation: 4,
            resources: 12,
            errors: vec!["VirtualService default/reviews (/f/vs.yaml:10): weight: invalid".into()],
            warnings: 2,
        };
        let debug: SocketAddr = "127.0.0.1:15014".parse().unwrap();
        assert_eq!(
            view.lines(Some(debug)),
            [
                "config: 12 resources, generation 4, 1 refused: the last good version of each \
                 keeps serving, 2 warnings (details: http://127.0.0.1:15014/debug/configz)",
                "config error: VirtualService default/reviews (/f/vs.yaml:10): weight: invalid",
            ]
        );
        let many = ConfigView::Served {
            generation: 1,
            resources: 1,
            errors: (0..10).map(|i| format!("e{i}")).collect(),
            warnings: 0,
        };
        let lines = many.lines(None);
        assert_eq!(lines.len(), 1 + ERRORS_SHOWN + 1);
        assert_eq!(lines.last().unwrap(), "config error: ... and 2 more");
        assert!(ConfigView::None.lines(None).is_empty());
    }
}
