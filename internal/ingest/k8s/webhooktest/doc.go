// Package webhooktest tests trail's Kubernetes endpoint with the Kubernetes
// API server's own audit webhook code (k8s.io/apiserver's webhook and
// buffered backends, configured by its own option code from the flags in
// docs/producers/kubernetes.md). It is a module of its own so that trail's
// go.mod never depends on k8s.io; it has no code but its tests.
//
// Run it from this directory: go test -race ./...
package webhooktest
