// Command fn is a Lambda function for lambdaemu's tests. The event chooses
// what it does:
//
//	{"action":"pid"}                 -> {"pid": <os.Getpid()>}
//	{"action":"echo","value":X}      -> X
//	{"action":"env","names":[...]}   -> {"env": {name: value}}
//	{"action":"deadline"}            -> {"remainingMs": <ms until the context deadline>}
//	{"action":"context"}             -> {"functionArn": ..., "requestId": ...} from the Lambda context
//	{"action":"error","message":M}   -> errors.New(M)
//	{"action":"panic"}               -> panics (the runtime reports it and exits)
//	{"action":"crash","code":N}      -> os.Exit(N) mid-invocation
//	{"action":"sleep","ms":N}        -> sleeps N ms, then {"pid": ...}
//	{"action":"log","message":M}     -> prints M to stdout and "err: "+M to stderr
//	{"action":"big","bytes":N}       -> a JSON string of N bytes
//
// FN_INIT_EXIT=N makes it exit with status N before starting the runtime
// loop; FN_INIT_SLEEP_MS=N makes it sleep that long first.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action  string          `json:"action"`
	Value   json.RawMessage `json:"value"`
	Names   []string        `json:"names"`
	Message string          `json:"message"`
	Code    int             `json:"code"`
	MS      int             `json:"ms"`
	Bytes   int             `json:"bytes"`
}

func handle(ctx context.Context, e event) (any, error) {
	switch e.Action {
	case "pid":
		return map[string]int{"pid": os.Getpid()}, nil
	case "echo":
		return e.Value, nil
	case "env":
		out := map[string]string{}
		for _, n := range e.Names {
			out[n] = os.Getenv(n)
		}
		return map[string]any{"env": out}, nil
	case "deadline":
		d, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		return map[string]int64{"remainingMs": time.Until(d).Milliseconds()}, nil
	case "context":
		lc, ok := lambdacontext.FromContext(ctx)
		if !ok {
			return nil, errors.New("no Lambda context")
		}
		return map[string]string{"functionArn": lc.InvokedFunctionArn, "requestId": lc.AwsRequestID}, nil
	case "error":
		return nil, errors.New(e.Message)
	case "panic":
		panic("test panic")
	case "crash":
		os.Exit(e.Code)
	case "sleep":
		fmt.Println("sleeping") // tests wait for this line: the invocation is running
		select {
		case <-time.After(time.Duration(e.MS) * time.Millisecond):
		case <-ctx.Done():
			// A real function often ignores its deadline; keep sleeping so
			// the emulator has to kill us.
			time.Sleep(time.Duration(e.MS) * time.Millisecond)
		}
		return map[string]int{"pid": os.Getpid()}, nil
	case "log":
		fmt.Println(e.Message)
		fmt.Fprintln(os.Stderr, "err: "+e.Message)
		return map[string]bool{"ok": true}, nil
	case "big":
		return strings.Repeat("x", e.Bytes), nil
	}
	return nil, fmt.Errorf("unknown action %q", e.Action)
}

func main() {
	if ms, _ := strconv.Atoi(os.Getenv("FN_INIT_SLEEP_MS")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	if code, _ := strconv.Atoi(os.Getenv("FN_INIT_EXIT")); code > 0 {
		fmt.Fprintln(os.Stderr, "init failed on purpose")
		os.Exit(code)
	}
	lambda.Start(handle)
}
