//! VirtualService validation.

use std::collections::HashSet;

use super::findings::Findings;
use super::rules::{
    is_dns1123_label, is_ip, validate_destination, validate_duration, validate_export_to,
    validate_gateway_names, validate_header_name, validate_header_value, validate_ip_subnet,
    validate_labels, validate_percent, validate_percentage, validate_port, validate_regex,
    validate_route_header_name, validate_string_match, validate_wildcard_domain,
};
use crate::meta::Config;
use crate::networking::{
    CorsPolicy, HeaderOperations, Headers, HttpFaultInjection, HttpMatchRequest, HttpRedirect,
    HttpRetry, HttpRewrite, HttpRoute, L4MatchAttributes, RouteDestination, StringMatch,
    TlsMatchAttributes, VirtualService,
};

/// The gateway name meaning "the sidecars of the mesh".
const MESH_GATEWAY: &str = "mesh";

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` policies.
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// Direct response bodies above this are refused (they bloat every proxy's config).
const MAX_DIRECT_RESPONSE_BODY: usize = 1024 * 1024;

/// How an HTTP route relates to delegation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RouteRole {
    /// An ordinary route.
    Independent,
    /// A route of a VirtualService that hands off to a delegate (`delegate` set).
    Root,
    /// A route of a delegate VirtualService (one without hosts).
    Delegate,
}

pub(super) fn validate(config: &Config<VirtualService>, findings: &mut Findings) {
    let spec = &config.spec;
    let is_delegate = spec.hosts.is_empty();
    if is_delegate {
        if !spec.gateways.is_empty() {
            findings.error(
                "spec.gateways",
                "delegate virtual service must have no gateways specified",
            );
        }
        if !spec.tls.is_empty() {
            findings.error(
                "spec.tls",
                "delegate virtual service must have no tls route specified",
            );
        }
        if !spec.tcp.is_empty() {
            findings.error(
                "spec.tcp",
                "delegate virtual service must have no tcp route specified",
            );
        }
    }

    let applies_to_gateway =
        !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == MESH_GATEWAY);
    validate_gateway_names(findings, "spec.gateways", &spec.gateways);

    let mut all_hosts_valid = true;
    for host in &spec.hosts {
        match validate_wildcard_domain(host) {
            Err(reason) if !is_ip(host) => {
                findings.error("spec.hosts", reason);
                all_hosts_valid = false;
            }
            Err(_) => {}
            Ok(()) if host == "*" && !applies_to_gateway => {
                findings.error(
                    "spec.hosts",
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                );
                all_hosts_valid = false;
            }
            Ok(()) => {}
        }
    }
    if all_hosts_valid {
        for (index, first) in spec.hosts.iter().enumerate() {
            for second in &spec.hosts[index + 1..] {
                if hosts_overlap(first, second) {
                    findings.error(
                        "spec.hosts",
                        format!("duplicate hosts in virtual service: {first} & {second}"),
                    );
                }
            }
        }
    }

    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        findings.error(
            "spec",
            "http, tcp or tls must be provided in virtual service",
        );
    }
    for (index, route) in spec.http.iter().enumerate() {
        let role = if is_delegate {
            RouteRole::Delegate
        } else if route.delegate.is_some() {
            RouteRole::Root
        } else {
            RouteRole::Independent
        };
        validate_http_route(findings, &format!("spec.http[{index}]"), route, role);
    }
    for (index, route) in spec.tls.iter().enumerate() {
        let field = format!("spec.tls[{index}]");
        if route.matches.is_empty() {
            findings.error(&field, "TLS route must have at least one match condition");
        }
        for (match_index, tls_match) in route.matches.iter().enumerate() {
            validate_tls_match(
                findings,
                &format!("{field}.match[{match_index}]"),
                tls_match,
                spec,
                applies_to_gateway,
            );
        }
        if route.route.is_empty() {
            findings.error(format!("{field}.route"), "TLS route is required");
        }
        validate_route_destinations(findings, &format!("{field}.route"), &route.route);
    }
    for (index, route) in spec.tcp.iter().enumerate() {
        let field = format!("spec.tcp[{index}]");
        for (match_index, l4_match) in route.matches.iter().enumerate() {
            validate_l4_match(findings, &format!("{field}.match[{match_index}]"), l4_match);
        }
        if route.route.is_empty() {
            findings.error(format!("{field}.route"), "TCP route is required");
        }
        validate_route_destinations(findings, &format!("{field}.route"), &route.route);
    }
    validate_export_to(findings, &spec.export_to, false, false);
    warn_unreachable_http_rules(findings, &spec.http);
}

/// Two hosts overlap when one matches the other (`*.foo.com` and `bar.foo.com`).
fn hosts_overlap(first: &str, second: &str) -> bool {
    fn matches(wildcard: &str, host: &str) -> bool {
        match wildcard.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix) || host.strip_prefix('*') == Some(suffix),
            None => wildcard == host,
        }
    }
    first == second || matches(first, second) || matches(second, first)
}

fn validate_http_route(findings: &mut Findings, field: &str, route: &HttpRoute, role: RouteRole) {
    validate_route_conflicts(findings, field, route, role);

    for (index, request) in route.matches.iter().enumerate() {
        validate_http_match(findings, &format!("{field}.match[{index}]"), request, role);
    }
    if let Some(headers) = &route.headers {
        validate_header_operations(findings, &format!("{field}.headers"), headers);
    }
    if let Some(cors) = &route.cors_policy {
        validate_cors(findings, &format!("{field}.corsPolicy"), cors);
    }
    if let Some(fault) = &route.fault {
        validate_fault(findings, &format!("{field}.fault"), fault);
    }
    for (name, percent) in [
        ("mirrorPercent", route.mirror_percent),
        ("mirror_percent", route.mirror_percent_snake),
    ] {
        if let Some(percent) = percent {
            if percent > 100 {
                findings.error(
                    format!("{field}.{name}"),
                    format!("mirror_percent must have a max value of 100 (it has {percent})"),
                );
            }
            findings.warning(
                format!("{field}.{name}"),
                "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
            );
        }
    }
    if let Some(percentage) = route.mirror_percentage {
        let value = percentage.value;
        if !(0.0..=100.0).contains(&value) {
            findings.error(
                format!("{field}.mirrorPercentage"),
                format!("mirror_percentage must be in range 0..100 (it has {value})"),
            );
        }
    }
    if let Some(mirror) = &route.mirror {
        validate_destination(findings, &format!("{field}.mirror"), mirror);
    }
    for (index, mirror) in route.mirrors.iter().enumerate() {
        let field = format!("{field}.mirrors[{index}]");
        validate_destination(
            findings,
            &format!("{field}.destination"),
            &mirror.destination,
        );
        if let Some(percentage) = mirror.percentage
            && !(0.0..=100.0).contains(&percentage.value)
        {
            findings.error(
                format!("{field}.percentage"),
                format!(
                    "mirror percentage must be in range 0..100 (it has {})",
                    percentage.value
                ),
            );
        }
    }
    if let Some(redirect) = &route.redirect {
        findings.check(format!("{field}.redirect"), validate_redirect(redirect));
    }
    if let Some(response) = &route.direct_response {
        let field = format!("{field}.directResponse");
        findings.check(
            format!("{field}.status"),
            validate_http_status(response.status),
        );
        let size = response.body.as_ref().map_or(0, |body| match body {
            crate::networking::HttpBody::String(text)
            | crate::networking::HttpBody::Bytes(text) => text.len(),
        });
        if size > MAX_DIRECT_RESPONSE_BODY {
            findings.error(
                format!("{field}.body"),
                "large direct_responses may impact control plane performance, must be less than 1MB",
            );
        }
    }
    if let Some(retries) = &route.retries {
        validate_retries(findings, &format!("{field}.retries"), retries);
    }
    if let Some(rewrite) = &route.rewrite {
        findings.check(format!("{field}.rewrite"), validate_rewrite(rewrite));
    }
    validate_authority_rewrite(findings, field, route);
    for (index, destination) in route.route.iter().enumerate() {
        let field = format!("{field}.route[{index}]");
        validate_destination(
            findings,
            &format!("{field}.destination"),
            &destination.destination,
        );
        if let Some(headers) = &destination.headers {
            validate_header_operations(findings, &format!("{field}.headers"), headers);
        }
        if let Some(weight) = destination.weight
            && weight < 0
        {
            findings.error(format!("{field}.weight"), format!("weight {weight} < 0"));
        }
    }
    if route.route.len() > 1
        && route
            .route
            .iter()
            .map(|d| d.weight.unwrap_or(0))
            .sum::<i32>()
            == 0
    {
        findings.error(format!("{field}.route"), "total destination weight = 0");
    }
    if let Some(timeout) = route.timeout {
        findings.check(format!("{field}.timeout"), validate_duration(timeout));
    }
}

fn validate_route_conflicts(
    findings: &mut Findings,
    field: &str,
    route: &HttpRoute,
    role: RouteRole,
) {
    let name = route.name.as_deref().unwrap_or_default();
    if role == RouteRole::Root {
        if route.redirect.is_some() {
            findings.error(
                field,
                format!("root HTTP route {name} must not specify redirect"),
            );
        }
        if !route.route.is_empty() {
            findings.error(
                field,
                format!("root HTTP route {name} must not specify route"),
            );
        }
        return;
    }
    if role == RouteRole::Delegate && route.delegate.is_some() {
        findings.error(field, "delegate HTTP route cannot contain delegate");
    }
    if route.redirect.is_some() {
        if !route.route.is_empty() {
            findings.error(field, "HTTP route cannot contain both route and redirect");
        }
        if route.fault.is_some() {
            findings.error(field, "HTTP route cannot contain both fault and redirect");
        }
        if route.rewrite.is_some() {
            findings.error(
                field,
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if route.direct_response.is_some() {
            findings.error(
                field,
                "HTTP route cannot contain both redirect and direct response",
            );
        }
    } else if route.direct_response.is_some() {
        if !route.route.is_empty() {
            findings.error(
                field,
                "HTTP route cannot contain both route and direct response",
            );
        }
    } else if route.route.is_empty() {
        findings.error(field, "HTTP route, redirect or direct_response is required");
    }
}

fn validate_http_match(
    findings: &mut Findings,
    field: &str,
    request: &HttpMatchRequest,
    role: RouteRole,
) {
    let string_matches = [
        ("uri", &request.uri),
        ("scheme", &request.scheme),
        ("method", &request.method),
        ("authority", &request.authority),
    ];
    for (name, matcher) in string_matches {
        let Some(matcher) = matcher else { continue };
        if role != RouteRole::Independent && matches!(matcher, StringMatch::Regex(_)) {
            findings.error(
                format!("{field}.{name}"),
                format!("{name} match does not support regex match for delegating"),
            );
        } else {
            findings.check(
                format!("{field}.{name}"),
                validate_string_match(matcher, name),
            );
        }
    }
    for (map_name, headers) in [
        ("headers", &request.headers),
        ("withoutHeaders", &request.without_headers),
    ] {
        for (name, matcher) in headers {
            let field = format!("{field}.{map_name}[{name}]");
            findings.check(&field, validate_route_header_name(name));
            // `regex: "*"` is not RE2: istiod reads it as "the header is present".
            if map_name == "withoutHeaders"
                && matches!(matcher, StringMatch::Regex(pattern) if pattern == "*")
            {
                continue;
            }
            if role != RouteRole::Independent && matches!(matcher, StringMatch::Regex(_)) {
                findings.error(
                    &field,
                    format!("header match {name} does not support regex match for delegating"),
                );
            } else {
                findings.check(&field, validate_string_match(matcher, map_name));
            }
        }
    }
    for (name, matcher) in &request.query_params {
        let field = format!("{field}.queryParams[{name}]");
        if role != RouteRole::Independent && matches!(matcher, StringMatch::Regex(_)) {
            findings.error(
                &field,
                format!("query param match {name} does not support regex match for delegating"),
            );
        } else {
            findings.check(&field, validate_string_match(matcher, "queryParams"));
        }
    }
    if let Some(port) = request.port {
        findings.check(format!("{field}.port"), validate_port(port));
    }
    validate_labels(
        findings,
        &format!("{field}.sourceLabels"),
        &request.source_labels,
    );
    validate_gateway_names(findings, &format!("{field}.gateways"), &request.gateways);
    if let Some(namespace) = &request.source_namespace
        && !is_dns1123_label(namespace)
    {
        findings.error(
            format!("{field}.sourceNamespace"),
            format!("sourceNamespace match {namespace} is invalid"),
        );
    }
}

fn validate_header_operations(findings: &mut Findings, field: &str, headers: &Headers) {
    let check =
        |findings: &mut Findings, direction: &str, operations: &HeaderOperations, request: bool| {
            let field = format!("{field}.{direction}");
            for (name, value) in operations.set.iter().chain(&operations.add) {
                let name_check = if request {
                    validate_request_header_write(name)
                } else {
                    validate_header_operation_name(name)
                };
                findings.check(&field, name_check);
                findings.check(&field, validate_header_value(value));
            }
            for name in &operations.remove {
                findings.check(&field, validate_header_operation_name(name));
            }
        };
    if let Some(request) = &headers.request {
        check(findings, "request", request, true);
    }
    if let Some(response) = &headers.response {
        check(findings, "response", response, false);
    }
}

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Request `set`/`add` may rewrite the authority (checked elsewhere), not other pseudo-headers.
fn validate_request_header_write(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_owned());
    }
    if name.starts_with(':') && !is_authority_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

fn validate_header_operation_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_owned());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if name.starts_with(':') {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// The authority may be rewritten in one place only.
fn validate_authority_rewrite(findings: &mut Findings, field: &str, route: &HttpRoute) {
    let mut current = route.rewrite.as_ref().and_then(|r| r.authority.clone());
    let Some(request) = route.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return;
    };
    for (name, value) in request.set.iter().chain(&request.add) {
        if !is_authority_header(name) {
            continue;
        }
        if let Some(existing) = &current {
            findings.error(
                format!("{field}.headers.request"),
                format!("authority header cannot be set multiple times: have {existing:?}, attempting to set {value:?}"),
            );
            return;
        }
        current = Some(value.clone());
    }
}

fn validate_cors(findings: &mut Findings, field: &str, cors: &CorsPolicy) {
    for origin in &cors.allow_origins {
        if origin.value().is_empty() {
            findings.error(
                format!("{field}.allowOrigins"),
                "'' is not a valid match type for CORS allow origins",
            );
        } else if let StringMatch::Regex(pattern) = origin {
            findings.check(
                format!("{field}.allowOrigins"),
                validate_regex(pattern, "corsPolicy.allowOrigins"),
            );
        }
    }
    for method in &cors.allow_methods {
        if !HTTP_METHODS.contains(&method.as_str()) {
            findings.error(
                format!("{field}.allowMethods"),
                format!("{method:?} is not a supported HTTP method"),
            );
        }
    }
    for (name, headers) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for header in headers {
            if header != "*" {
                findings.check(format!("{field}.{name}"), validate_header_name(header));
            }
        }
    }
    if let Some(max_age) = cors.max_age {
        findings.check(format!("{field}.maxAge"), validate_duration(max_age));
        if max_age.subsec_nanos() > 0 {
            findings.error(
                format!("{field}.maxAge"),
                "max_age duration is accurate only to seconds precision",
            );
        }
    }
}

fn validate_fault(findings: &mut Findings, field: &str, fault: &HttpFaultInjection) {
    if fault.abort.is_none() && fault.delay.is_none() {
        findings.error(
            field,
            "HTTP fault injection must have an abort and/or a delay",
        );
    }
    if let Some(abort) = &fault.abort {
        let field = format!("{field}.abort");
        if let Some(percentage) = abort.percentage {
            findings.check(
                format!("{field}.percentage"),
                validate_percentage(percentage.value),
            );
        }
        let error_types = [
            abort.http_status.is_some(),
            abort.grpc_status.is_some(),
            abort.http2_error.is_some(),
        ];
        match error_types.iter().filter(|set| **set).count() {
            0 => findings.warning(&field, "abort configured, but error type not set"),
            1 => {}
            _ => findings.error(
                &field,
                "only one of httpStatus, grpcStatus or http2Error can be set",
            ),
        }
        if let Some(status) = abort.http_status {
            findings.check(
                format!("{field}.httpStatus"),
                validate_http_status(u32::try_from(status).unwrap_or(0)),
            );
        }
        if let Some(status) = &abort.grpc_status
            && crate::networking::grpc_status_code(status).is_none()
        {
            findings.error(
                format!("{field}.grpcStatus"),
                format!("gRPC status {status:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"),
            );
        }
        if abort.http2_error.is_some() {
            findings.error(
                format!("{field}.http2Error"),
                "HTTP/2 abort fault injection not supported yet",
            );
        }
    }
    if let Some(delay) = &fault.delay {
        let field = format!("{field}.delay");
        if let Some(percentage) = delay.percentage {
            findings.check(
                format!("{field}.percentage"),
                validate_percentage(percentage.value),
            );
        }
        if let Some(percent) = delay.percent {
            findings.check(format!("{field}.percent"), validate_percent(percent));
        }
        match (delay.fixed_delay, delay.exponential_delay) {
            (Some(_), Some(_)) => findings.error(
                &field,
                "only one of fixedDelay or exponentialDelay can be set",
            ),
            (Some(fixed), None) => {
                findings.check(format!("{field}.fixedDelay"), validate_duration(fixed));
            }
            (None, Some(exponential)) => {
                findings.check(
                    format!("{field}.exponentialDelay"),
                    validate_duration(exponential),
                );
                findings.error(
                    format!("{field}.exponentialDelay"),
                    "exponentialDelay not supported yet",
                );
            }
            (None, None) => findings.error(&field, "delay must set fixedDelay"),
        }
    }
}

fn validate_http_status(status: u32) -> Result<(), String> {
    if (200..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status} is not in range 200-599"))
    }
}

fn validate_redirect(redirect: &HttpRedirect) -> Result<(), String> {
    let set = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    if !set(&redirect.uri)
        && !set(&redirect.authority)
        && !set(&redirect.scheme)
        && redirect.port.is_none()
        && redirect.derive_port.is_none()
        && !set(&redirect.prefix_rewrite)
    {
        return Err("redirect must specify URI, authority, scheme, or port".to_owned());
    }
    if set(&redirect.uri) && set(&redirect.prefix_rewrite) {
        return Err("only one of uri or prefixRewrite can be set".to_owned());
    }
    if redirect.port.is_some() && redirect.derive_port.is_some() {
        return Err("only one of port or derivePort can be set".to_owned());
    }
    if let Some(code) = redirect.redirect_code
        && code != 0
        && !(300..=399).contains(&code)
    {
        return Err(format!("{code} is not a valid redirect code, must be 3xx"));
    }
    if let Some(scheme) = redirect.scheme.as_deref()
        && !matches!(scheme, "" | "http" | "https")
    {
        return Err("invalid redirect scheme, must be \"http\" or \"https\"".to_owned());
    }
    if let Some(port) = redirect.port {
        validate_port(port)?;
    }
    Ok(())
}

fn validate_retries(findings: &mut Findings, field: &str, retries: &HttpRetry) {
    if retries.attempts < 0 {
        findings.error(format!("{field}.attempts"), "attempts cannot be negative");
    }
    if retries.attempts == 0
        && (retries.per_try_timeout.is_some()
            || retries.retry_on.as_deref().is_some_and(|r| !r.is_empty())
            || retries.retry_remote_localities.is_some())
    {
        findings.error(
            field,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    if let Some(timeout) = retries.per_try_timeout {
        findings.check(format!("{field}.perTryTimeout"), validate_duration(timeout));
    }
    if let Some(backoff) = retries.backoff {
        findings.check(format!("{field}.backoff"), validate_duration(backoff));
    }
    if let Some(retry_on) = retries.retry_on.as_deref().filter(|r| !r.is_empty()) {
        for policy in retry_on.split(',') {
            let is_status = policy
                .parse::<u16>()
                .is_ok_and(|code| (100..=599).contains(&code));
            if !is_status && !RETRY_ON_POLICIES.contains(&policy) {
                findings.error(
                    format!("{field}.retryOn"),
                    format!("{policy:?} is not a valid retryOn policy"),
                );
            }
        }
    }
}

fn validate_rewrite(rewrite: &HttpRewrite) -> Result<(), String> {
    let set = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    if set(&rewrite.uri) && rewrite.uri_regex_rewrite.is_some() {
        return Err("rewrite may only contain one of URI or UriRegexRewrite".to_owned());
    }
    if !set(&rewrite.uri) && rewrite.uri_regex_rewrite.is_none() && !set(&rewrite.authority) {
        return Err("rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified".to_owned());
    }
    if let Some(regex_rewrite) = &rewrite.uri_regex_rewrite {
        match (&regex_rewrite.pattern, &regex_rewrite.rewrite) {
            (Some(pattern), Some(replacement))
                if !pattern.is_empty() && !replacement.is_empty() =>
            {
                validate_regex(pattern, "HTTPRewrite.UriRegexRewrite.Match")?;
            }
            _ => {
                return Err(
                    "UriRegexRewrite requires both Rewrite and Match fields to be specified"
                        .to_owned(),
                );
            }
        }
    }
    Ok(())
}

fn validate_tls_match(
    findings: &mut Findings,
    field: &str,
    tls_match: &TlsMatchAttributes,
    spec: &VirtualService,
    applies_to_gateway: bool,
) {
    if tls_match.sni_hosts.is_empty() {
        findings.error(
            format!("{field}.sniHosts"),
            "TLS match must have at least one SNI host",
        );
    }
    for sni_host in &tls_match.sni_hosts {
        let field = format!("{field}.sniHosts");
        if let Err(reason) = validate_wildcard_domain(sni_host) {
            if is_ip(sni_host) {
                findings.warning(
                    &field,
                    format!("using an IP address ({sni_host:?}) goes against SNI spec and most clients do not support this"),
                );
            } else {
                findings.error(&field, reason);
            }
            continue;
        }
        let covered = spec
            .hosts
            .iter()
            .any(|host| sni_is_subset_of(sni_host, host));
        if !covered && !applies_to_gateway {
            findings.error(
                &field,
                format!(
                    "SNI host {sni_host:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                    spec.hosts.join(", ")
                ),
            );
        }
    }
    for subnet in &tls_match.destination_subnets {
        findings.check(
            format!("{field}.destinationSubnets"),
            validate_ip_subnet(subnet),
        );
    }
    if let Some(port) = tls_match.port {
        findings.check(format!("{field}.port"), validate_port(port));
    }
    validate_labels(
        findings,
        &format!("{field}.sourceLabels"),
        &tls_match.source_labels,
    );
    validate_gateway_names(findings, &format!("{field}.gateways"), &tls_match.gateways);
}

/// Whether every name `sni` matches is also matched by `host`.
fn sni_is_subset_of(sni: &str, host: &str) -> bool {
    if sni == host || host == "*" {
        return true;
    }
    match host.strip_prefix('*') {
        Some(suffix) => sni
            .strip_prefix('*')
            .map_or(sni.ends_with(suffix), |s| s.ends_with(suffix)),
        None => false,
    }
}

fn validate_l4_match(findings: &mut Findings, field: &str, l4_match: &L4MatchAttributes) {
    for subnet in &l4_match.destination_subnets {
        findings.check(
            format!("{field}.destinationSubnets"),
            validate_ip_subnet(subnet),
        );
    }
    if let Some(subnet) = &l4_match.source_subnet {
        findings.check(format!("{field}.sourceSubnet"), validate_ip_subnet(subnet));
    }
    if let Some(port) = l4_match.port {
        findings.check(format!("{field}.port"), validate_port(port));
    }
    validate_labels(
        findings,
        &format!("{field}.sourceLabels"),
        &l4_match.source_labels,
    );
    validate_gateway_names(findings, &format!("{field}.gateways"), &l4_match.gateways);
}

fn validate_route_destinations(
    findings: &mut Findings,
    field: &str,
    destinations: &[RouteDestination],
) {
    let mut total = 0;
    for (index, destination) in destinations.iter().enumerate() {
        let field = format!("{field}[{index}]");
        validate_destination(
            findings,
            &format!("{field}.destination"),
            &destination.destination,
        );
        let weight = destination.weight.unwrap_or(0);
        if weight < 0 {
            findings.error(format!("{field}.weight"), format!("weight {weight} < 0"));
        }
        total += weight;
    }
    if destinations.len() > 1 && total == 0 {
        findings.error(field, "total destination weight = 0");
    }
}

/// Istio warns about rules that can never match: a catch-all that is not last, or a
/// rule whose every match was already used by an earlier rule.
fn warn_unreachable_http_rules(findings: &mut Findings, routes: &[HttpRoute]) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut catch_all_seen = false;
    for (index, route) in routes.iter().enumerate() {
        let name = route
            .name
            .as_ref()
            .map_or_else(|| format!("#{index}"), |name| format!("{name:?}"));
        if route.matches.is_empty() {
            if catch_all_seen {
                findings.warning(
                    format!("spec.http[{index}]"),
                    format!("virtualService rule {name} not used (only the last rule can have no matches)"),
                );
            }
            catch_all_seen = true;
            continue;
        }
        let mut duplicates = 0;
        for request in &route.matches {
            let key = match_key(request);
            if seen.insert(key) {
                continue;
            }
            duplicates += 1;
        }
        if duplicates == route.matches.len() {
            findings.warning(
                format!("spec.http[{index}]"),
                format!("virtualService rule {name} not used (all matches used by prior rules)"),
            );
        }
    }
}

/// A comparable rendering of a match's conditions (its name excluded).
fn match_key(request: &HttpMatchRequest) -> String {
    // Maps in a match are BTreeMaps, so the Debug rendering is deterministic.
    let mut unnamed = request.clone();
    unnamed.name = None;
    format!("{unnamed:?}")
}
