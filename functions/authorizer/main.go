// Command authorizer is the API Gateway REST Lambda REQUEST authorizer
// (template.yaml: AuthorizerFunction). Wiring only: configuration is read
// once per container, clients are built once, and every invocation runs
// authorizer.Handler.Handle through the Runtime API loop of package
// internal/runtimeapi. See package internal/authorizer.
package main

import (
	"context"
	"os"

	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/runtimeapi"
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
	err = runtimeapi.Start(runtimeapi.JSON(h.Handle))
	log.Error("the Lambda Runtime API loop ended", "error", err.Error())
	os.Exit(1)
}
