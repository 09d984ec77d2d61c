//! Istio resources -> Envoy v3 resources for one proxy.
