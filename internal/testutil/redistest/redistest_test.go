package redistest

import (
	"strings"
	"testing"
)

func TestStartDoRestart(t *testing.T) {
	s := Start(t)
	if got := s.Do(t, "SET", "k", "v"); got != "OK" {
		t.Fatalf("SET = %q, want OK", got)
	}
	if got := s.Do(t, "GET", "k"); got != "v" {
		t.Fatalf("GET = %q, want v", got)
	}
	s.Restart(t)
	if got := s.Do(t, "EXISTS", "k"); got != "0" {
		t.Fatalf("EXISTS after restart = %q, want 0 (data set must be empty)", got)
	}
	if got := s.Do(t, "INFO", "server"); !strings.Contains(got, "redis_version") {
		t.Fatalf("INFO server lacks redis_version: %q", got)
	}
}
