//! `envoy.extensions.filters.http.fault.v3.HTTPFault` → [`FaultConfig`].

use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort};
use http::StatusCode;

use super::matchers::compile_header;
use super::percent::fraction;
use super::{Reason, duration};
use crate::filters::fault::{AbortWith, FaultAbort, FaultConfig, FaultDelay};

pub const HTTP_FAULT_TYPE: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";

pub fn compile_fault(fault: &HttpFault) -> Result<FaultConfig, Reason> {
    let runtime_keys = [
        &fault.delay_percent_runtime,
        &fault.abort_percent_runtime,
        &fault.delay_duration_runtime,
        &fault.abort_http_status_runtime,
        &fault.max_active_faults_runtime,
        &fault.response_rate_limit_percent_runtime,
        &fault.abort_grpc_status_runtime,
    ];
    if runtime_keys.iter().any(|key| !key.is_empty()) {
        return Err("runtime keys are not supported (the proxy has no runtime)".into());
    }
    if !fault.downstream_nodes.is_empty() {
        return Err("downstream_nodes is not supported yet".into());
    }
    if fault.response_rate_limit.is_some() {
        return Err("response_rate_limit is not supported yet".into());
    }
    let delay = match &fault.delay {
        None => None,
        Some(delay) => {
            let duration = match &delay.fault_delay_secifier {
                Some(fault_delay::FaultDelaySecifier::FixedDelay(d)) => duration(d),
                Some(fault_delay::FaultDelaySecifier::HeaderDelay(_)) => {
                    return Err("delay.header_delay is not supported yet".into());
                }
                None => return Err("delay needs fixed_delay".into()),
            };
            Some(FaultDelay {
                duration,
                share: fraction(delay.percentage.as_ref(), "delay.percentage")?,
            })
        }
    };
    let abort = match &fault.abort {
        None => None,
        Some(abort) => {
            if !abort.response_body.is_empty() {
                return Err("abort.response_body is not supported yet".into());
            }
            let with = match abort.error_type {
                Some(fault_abort::ErrorType::HttpStatus(status)) => AbortWith::Http(
                    u16::try_from(status)
                        .ok()
                        .filter(|status| (200..600).contains(status))
                        .and_then(|status| StatusCode::from_u16(status).ok())
                        .ok_or_else(|| {
                            format!("abort.http_status {status} is not in [200, 600)")
                        })?,
                ),
                Some(fault_abort::ErrorType::GrpcStatus(status)) => AbortWith::Grpc(status),
                Some(fault_abort::ErrorType::HeaderAbort(_)) => {
                    return Err("abort.header_abort is not supported yet".into());
                }
                None => return Err("abort needs http_status or grpc_status".into()),
            };
            Some(FaultAbort {
                with,
                share: fraction(abort.percentage.as_ref(), "abort.percentage")?,
            })
        }
    };
    let headers = fault
        .headers
        .iter()
        .map(compile_header)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FaultConfig {
        delay,
        abort,
        upstream_cluster: Some(fault.upstream_cluster.clone()).filter(|c| !c.is_empty()),
        headers,
        max_active_faults: fault.max_active_faults.map(|max| max.value),
    })
}
