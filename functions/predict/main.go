// Command predict is the mock ML function behind the rate-limiting
// authorizer: wiring only, the handler lives in internal/predict.
//
// Environment: LOG_LEVEL (debug, info, warn, error; default info).
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/bucketgate/bucketgate/internal/predict"
	"github.com/bucketgate/bucketgate/internal/runtimeapi"
)

func main() {
	level := slog.LevelInfo
	if v := os.Getenv("LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			fmt.Fprintf(os.Stderr, "predict: LOG_LEVEL: %q is not one of debug, info, warn, error\n", v)
			os.Exit(1)
		}
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	h := predict.New(predict.Config{Logger: logger})
	err := runtimeapi.Start(runtimeapi.JSON(h.Handle))
	logger.Error("the Lambda Runtime API loop ended", "error", err.Error())
	os.Exit(1)
}
