package upstashtest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestStart(t *testing.T) {
	env := Start(t)
	tests := []struct {
		name       string
		token      string
		body       string
		wantStatus int
		wantBody   string
	}{
		{name: "ping", token: env.Token, body: `["PING"]`, wantStatus: 200, wantBody: `{"result":"PONG"}`},
		{name: "set", token: env.Token, body: `["SET","k","v"]`, wantStatus: 200, wantBody: `{"result":"OK"}`},
		{name: "wrong token", token: "nope", body: `["PING"]`, wantStatus: 401, wantBody: `{"error":"WRONGPASS invalid or missing auth token"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, env.URL, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tt.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if got, want := env.Redis.Do(t, "GET", "k"), "v"; got != want {
		t.Errorf("GET k on the backing redis-server = %q, want %q", got, want)
	}
	if got := env.Server.Requests(); got != 3 {
		t.Errorf("Requests() = %d, want 3", got)
	}
}
