package upstash

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
)

// Script is a Lua script run with EVALSHA, falling back to EVAL when the
// server does not have it cached. It is safe for concurrent use and holds
// no per-server state: every Run starts with EVALSHA.
type Script struct {
	src string
	sha string
}

// NewScript returns a Script for the Lua source src. The SHA-1 is computed
// once, here. A script may start with Upstash's "#!lua flags=..." line; the
// hash is of src exactly as given, which is what Upstash caches it under.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// SHA1 returns the lowercase hex SHA-1 of the source, as EVALSHA wants it.
func (s *Script) SHA1() string { return s.sha }

// Source returns the Lua source.
func (s *Script) Source() string { return s.src }

// Run runs the script with EVALSHA. When the server answers NOSCRIPT (the
// script is not in its cache, so it did not run), Run sends EVAL once,
// which runs the script and caches it; later calls use EVALSHA again.
// Nothing else is retried: a script is in general not idempotent.
//
// keys become KEYS (their count is sent as numkeys) and args ARGV; args
// take the types Client.Do takes. Keys must be valid UTF-8. Neither slice is
// retained, so boxing variables into args costs no allocation.
func (s *Script) Run(ctx context.Context, c *Client, keys []string, args ...any) (Value, error) {
	return s.run(ctx, c, keys, args, nil)
}

// RunStrings is Run for string arguments, with no boxing of arguments into
// interfaces.
func (s *Script) RunStrings(ctx context.Context, c *Client, keys []string, args []string) (Value, error) {
	return s.run(ctx, c, keys, nil, args)
}

func (s *Script) run(ctx context.Context, c *Client, keys []string, args []any, sargs []string) (Value, error) {
	if s == nil {
		return Value{}, fmt.Errorf("%w: nil script", ErrInvalidArgument)
	}
	if c == nil {
		return Value{}, errNilClient
	}
	v, err := s.send(ctx, c, "EVALSHA", s.sha, keys, args, sargs)
	if e, ok := err.(*Error); ok && e.isNoScript() {
		return s.send(ctx, c, "EVAL", s.src, keys, args, sargs)
	}
	return v, err
}

func (s *Script) send(ctx context.Context, c *Client, cmd, body string, keys []string, args []any, sargs []string) (Value, error) {
	buf := getBuffer()
	var err error
	if buf.b, err = appendScriptCall(buf.b[:0], cmd, body, keys, args, sargs); err != nil {
		putBuffer(buf)
		return Value{}, err
	}
	return c.doSingle(ctx, buf)
}
