// Package e2e holds the end-to-end tests: the real template.yaml run by
// internal/local/startapi (cmd/local start-api's engine), with the real authorizer
// and predict functions built for the host, a real redis-server behind the
// Upstash-compatible REST server, and a real API key file. Each test checks
// a row of README's HTTP behaviour table through plain HTTP requests.
package e2e
