// Command echo is a test function for startapi and cmd/local: it answers a
// proxy event with what it saw, and PINGs Upstash when configured.
// With the event {"fail": "message"} (direct invoke) it returns that error;
// the path /guarded/crash makes it exit mid-invocation and /guarded/sleep
// makes it sleep 5 s (past its 1 s timeout); an authorizer context with
// forbidden=true makes it answer 403, as the predict function does.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	events.APIGatewayProxyRequest
	Fail string `json:"fail"`
}

func handle(ctx context.Context, e event) (events.APIGatewayProxyResponse, error) {
	switch {
	case e.Fail != "":
		return events.APIGatewayProxyResponse{}, errors.New(e.Fail)
	case e.Path == "/guarded/crash":
		os.Exit(2)
	case e.Path == "/guarded/sleep":
		time.Sleep(5 * time.Second)
	case e.RequestContext.Authorizer["forbidden"] == "true":
		return events.APIGatewayProxyResponse{StatusCode: 403, Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"message":"Forbidden"}`}, nil
	}
	out := map[string]any{
		"path":           e.Path,
		"resource":       e.Resource,
		"pathParameters": e.PathParameters,
		"authorizer":     e.RequestContext.Authorizer,
		"sourceIp":       e.RequestContext.Identity.SourceIP,
		"stage":          e.RequestContext.Stage,
		"pid":            os.Getpid(),
		"cwd":            cwd(),
		"env": map[string]string{
			"GREETING":   os.Getenv("GREETING"),
			"ONLY_ECHO":  os.Getenv("ONLY_ECHO"),
			"UNDECLARED": os.Getenv("UNDECLARED"),
		},
		"upstash": ping(ctx),
	}
	b, _ := json.Marshal(out)
	return events.APIGatewayProxyResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(b)}, nil
}

func cwd() string {
	d, _ := os.Getwd()
	return d
}

// ping sends PING to the configured Upstash REST endpoint.
func ping(ctx context.Context) string {
	url := os.Getenv("UPSTASH_REDIS_REST_URL")
	if url == "" {
		return "not configured"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`["PING"]`))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("UPSTASH_REDIS_REST_TOKEN"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct{ Result string }
	if json.Unmarshal(b, &r) != nil || r.Result == "" {
		return fmt.Sprintf("status %d: %s", resp.StatusCode, b)
	}
	return r.Result
}

func main() { lambda.Start(handle) }
