// Command authorizer is the API Gateway REST Lambda REQUEST authorizer
// (template.yaml: AuthorizerFunction). Wiring only: configuration is read
// once per container, clients are built once, and every invocation runs
// authorizer.Handler.Handle. See package internal/authorizer.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/bucketgate/bucketgate/internal/authorizer"
)

func main() {
	settings, err := authorizer.LoadSettings(os.Getenv)
	log := authorizer.NewLogger(os.Stderr, settings.LogLevel)
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	settings.Now, log = testClock(log) // nil and log itself, except in the soak build (clock_soak.go)
	h, err := authorizer.Build(context.Background(), settings, log, os.Stdout)
	if err != nil {
		log.Error("start-up failed", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
