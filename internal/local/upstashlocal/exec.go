package upstashlocal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// reply is one command's outcome: a decoded value (nil, int64, string,
// []any, or a redis.Error nested in an array) or a Redis error message.
type reply struct {
	value any
	err   string
}

// unavailable lists commands the REST API refuses: they would change the
// state of a pooled connection (or stream forever), or control the server.
var unavailable = map[string]bool{
	"AUTH": true, "HELLO": true, "SELECT": true,
	"MULTI": true, "EXEC": true, "DISCARD": true, "WATCH": true, "UNWATCH": true,
	"SUBSCRIBE": true, "PSUBSCRIBE": true, "SSUBSCRIBE": true,
	"UNSUBSCRIBE": true, "PUNSUBSCRIBE": true, "SUNSUBSCRIBE": true,
	"MONITOR": true, "CLIENT": true, "QUIT": true, "RESET": true,
	"SHUTDOWN": true, "DEBUG": true,
	"SYNC": true, "PSYNC": true, "REPLCONF": true, "REPLICAOF": true, "SLAVEOF": true, "FAILOVER": true,
}

func notAvailable(name string) string {
	return "ERR Command is not available: '" + strings.ToUpper(name) + "'"
}

// prepared is a command ready for the backend.
type prepared struct {
	args  []any
	fix   fixup
	name  string // the client's command name, for error messages
	block string // non-empty: refused without sending, with this error
}

func (s *Server) prepare(cmd []string) prepared {
	upper := strings.ToUpper(cmd[0])
	if unavailable[upper] {
		return prepared{name: cmd[0], block: notAvailable(cmd[0])}
	}
	out, fix := s.scripts.rewriteCommand(cmd, upper)
	args := make([]any, len(out))
	for i, a := range out {
		args[i] = a
	}
	return prepared{args: args, fix: fix, name: cmd[0]}
}

// finish turns a go-redis command outcome into a reply. A non-nil error
// means the backend could not be used at all (not a Redis error reply).
func (p prepared) finish(v any, err error) (reply, error) {
	var r reply
	switch {
	case err == nil:
		r.value = v
	case errors.Is(err, redis.Nil):
		r.value = nil
	default:
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			return reply{}, err
		}
		r.err = redisErrorText(rerr.Error(), p.name)
	}
	if p.fix != nil {
		r = p.fix(r)
	}
	return r, nil
}

// redisErrorText maps Redis's "unknown command" to Upstash's wording, which
// also keeps the arguments (perhaps keys) out of the reply.
func redisErrorText(msg, name string) string {
	if strings.HasPrefix(msg, "ERR unknown command") {
		return notAvailable(name)
	}
	return msg
}

func (s *Server) backendFailure(ctx context.Context, w http.ResponseWriter, err error) int {
	if ctx.Err() != nil {
		// The client went away; nobody reads this reply.
		return writeError(w, http.StatusServiceUnavailable, "ERR request canceled")
	}
	s.log.LogAttrs(ctx, slog.LevelError, "redis backend failed", slog.String("error", err.Error()))
	return writeError(w, http.StatusBadGateway, msgBackend)
}

func (s *Server) serveCommand(w http.ResponseWriter, r *http.Request, cmd []string, b64 bool) int {
	p := s.prepare(cmd)
	if p.block != "" {
		return writeError(w, http.StatusBadRequest, p.block)
	}
	ctx := r.Context()
	rep, err := p.finish(s.rdb.Do(ctx, p.args...).Result())
	if err != nil {
		return s.backendFailure(ctx, w, err)
	}
	if rep.err != "" {
		return writeError(w, http.StatusBadRequest, rep.err)
	}
	return writeJSON(w, http.StatusOK, resultItem{Result: encodeValue(rep.value, b64, true)})
}

func (s *Server) servePipeline(w http.ResponseWriter, r *http.Request, cmds [][]string, b64 bool) int {
	ctx := r.Context()
	preps := make([]prepared, len(cmds))
	sent := make([]*redis.Cmd, len(cmds))
	pipe := s.rdb.Pipeline()
	n := 0
	for i, c := range cmds {
		preps[i] = s.prepare(c)
		if preps[i].block == "" {
			sent[i] = pipe.Do(ctx, preps[i].args...)
			n++
		}
	}
	if n > 0 {
		// Per-command errors are read from each command below; a transport
		// failure shows up there too.
		_, _ = pipe.Exec(ctx)
	}
	items := make([]any, len(cmds))
	for i, p := range preps {
		if p.block != "" {
			items[i] = errorItem{Error: p.block}
			continue
		}
		rep, err := p.finish(sent[i].Result())
		if err != nil {
			return s.backendFailure(ctx, w, err)
		}
		items[i] = item(rep, b64)
	}
	return writeJSON(w, http.StatusOK, items)
}

func (s *Server) serveMultiExec(w http.ResponseWriter, r *http.Request, cmds [][]string, b64 bool) int {
	ctx := r.Context()
	preps := make([]prepared, len(cmds))
	for i, c := range cmds {
		preps[i] = s.prepare(c)
		if preps[i].block != "" {
			// Upstash discards a transaction holding an unsupported command.
			return writeError(w, http.StatusBadRequest, preps[i].block)
		}
	}
	// MULTI and the commands go down one connection in one round trip; then
	// EXEC, or DISCARD when a command could not be queued. (Redis would turn
	// that EXEC into EXECABORT anyway, but the embedded store runs the
	// commands that did queue.)
	conn := s.rdb.Conn()
	defer conn.Close()
	pipe := conn.Pipeline()
	multi := pipe.Do(ctx, "MULTI")
	queued := make([]*redis.Cmd, len(cmds))
	for i, p := range preps {
		queued[i] = pipe.Do(ctx, p.args...)
	}
	_, _ = pipe.Exec(ctx)
	if _, err := multi.Result(); err != nil {
		return s.backendFailure(ctx, w, err)
	}
	// From here on the connection is inside MULTI: end the transaction even
	// if the client has gone, so it never returns to the pool in that state.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for i, q := range queued {
		_, err := q.Result()
		if err == nil {
			continue
		}
		discardErr := conn.Do(endCtx, "DISCARD").Err()
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			return s.backendFailure(ctx, w, err)
		}
		if discardErr != nil {
			return s.backendFailure(ctx, w, fmt.Errorf("discard: %w", discardErr))
		}
		// Upstash discards the whole transaction and reports the cause.
		return writeError(w, http.StatusBadRequest, redisErrorText(rerr.Error(), preps[i].name))
	}
	v, err := conn.Do(endCtx, "EXEC").Result()
	if err != nil {
		var rerr redis.Error
		if !errors.As(err, &rerr) || errors.Is(err, redis.Nil) {
			return s.backendFailure(ctx, w, fmt.Errorf("exec: %w", err))
		}
		return writeError(w, http.StatusBadRequest, rerr.Error())
	}
	results, ok := v.([]any)
	if !ok || len(results) != len(cmds) {
		return s.backendFailure(ctx, w, fmt.Errorf("exec returned %T with an unexpected shape", v))
	}
	items := make([]any, len(cmds))
	for i, res := range results {
		var rep reply
		if e, isErr := res.(redis.Error); isErr {
			rep.err = redisErrorText(e.Error(), preps[i].name)
		} else {
			rep.value = res
		}
		if preps[i].fix != nil {
			rep = preps[i].fix(rep)
		}
		items[i] = item(rep, b64)
	}
	return writeJSON(w, http.StatusOK, items)
}

// JSON reply shapes. Result has no omitempty: {"result": null} is a reply.
type resultItem struct {
	Result any `json:"result"`
}

type errorItem struct {
	Error string `json:"error"`
}

func item(r reply, b64 bool) any {
	if r.err != "" {
		return errorItem{Error: r.err}
	}
	return resultItem{Result: encodeValue(r.value, b64, true)}
}

// encodeValue converts a decoded Redis reply to its JSON form. With b64,
// strings are base64 encoded, except "OK" at the top of a result, which
// Upstash sends (and @upstash/redis expects) as is. An error nested in an
// array (a Lua table holding an error reply) becomes its message.
func encodeValue(v any, b64, top bool) any {
	switch v := v.(type) {
	case nil:
		return nil
	case int64:
		return v
	case string:
		if b64 && !(top && v == "OK") {
			return base64.StdEncoding.EncodeToString([]byte(v))
		}
		return v
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = encodeValue(e, b64, false)
		}
		return out
	case redis.Error:
		return encodeValue(v.Error(), b64, false)
	case float64:
		// Not produced by RESP2; kept exact should a backend send one.
		return encodeValue(strconv.FormatFloat(v, 'f', -1, 64), b64, top)
	case bool:
		if v {
			return int64(1)
		}
		return nil
	}
	return encodeValue(fmt.Sprint(v), b64, top)
}

// writeJSON writes v with status and returns status. HTML characters are
// not escaped: replies carry data, not markup.
func writeJSON(w http.ResponseWriter, status int, v any) int {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only unsupported Go types can fail here, never reply data.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"ERR could not encode reply"}`)
	} else {
		buf.Truncate(buf.Len() - 1) // Encode's trailing newline
	}
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return status
}

func writeError(w http.ResponseWriter, status int, msg string) int {
	return writeJSON(w, status, errorItem{Error: msg})
}
