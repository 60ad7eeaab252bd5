// Package sdktest tests trail's OTLP/HTTP logs endpoint with the
// OpenTelemetry Go SDK's otlploghttp exporter, configured by the
// environment block in docs/producers/opentelemetry.md. It is a module of
// its own so that trail's go.mod does not carry the SDK; it has no code but
// its tests.
//
// Run it from this directory: go test -race ./...
package sdktest
