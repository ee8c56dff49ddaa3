package upstash

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Script is a Lua script run with EVALSHA, falling back to EVAL when the
// server does not have it cached. It is safe for concurrent use and holds
// no per-server state: every Run starts with EVALSHA.
type Script struct {
	src     string
	sha     string
	srcUTF8 bool // src can travel in a JSON string
}

// NewScript returns a Script for the Lua source src. The SHA-1 is computed
// once, here. A script may start with Upstash's "#!lua flags=..." line; the
// hash is of src exactly as given, which is what Upstash caches it under.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:]), srcUTF8: utf8.ValidString(src)}
}

// SHA1 returns the lowercase hex SHA-1 of the source, as EVALSHA wants it.
func (s *Script) SHA1() string { return s.sha }

// Run runs the script with EVALSHA and decodes its result into out, as
// Client.Do does. When the server answers NOSCRIPT (the script is not in
// its cache, so it did not run), Run sends EVAL once, which runs the script
// and caches it; later calls use EVALSHA again. Nothing else is retried: a
// script is in general not idempotent.
//
// keys become KEYS (their count is sent as numkeys) and must be valid
// UTF-8; args become ARGV and take the types Client.Do takes.
func (s *Script) Run(ctx context.Context, c *Client, out any, keys []string, args ...any) error {
	if s == nil {
		return fmt.Errorf("%w: nil script", ErrInvalidArgument)
	}
	if err := c.check(ctx, out); err != nil {
		return err
	}
	if !s.srcUTF8 {
		return fmt.Errorf("%w: script source %s", ErrInvalidArgument, errNotUTF8)
	}
	cmd := make([]string, 0, 3+len(keys)+len(args))
	cmd = append(cmd, "EVALSHA", s.sha, strconv.Itoa(len(keys)))
	for i, k := range keys {
		if !utf8.ValidString(k) {
			return fmt.Errorf("%w: key %d %s", ErrInvalidArgument, i+1, errNotUTF8)
		}
		cmd = append(cmd, k)
	}
	for i, a := range args {
		v, err := argString(a)
		if err != nil {
			return fmt.Errorf("%w: argument %d %s", ErrInvalidArgument, i+1, err.Error())
		}
		cmd = append(cmd, v)
	}
	err := c.call(ctx, out, cmd)
	if e, ok := err.(*Error); ok && e.isNoScript() {
		cmd[0], cmd[1] = "EVAL", s.src
		return c.call(ctx, out, cmd)
	}
	return err
}
