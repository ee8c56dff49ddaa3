// Package upstash is a small client for the Upstash Redis REST API, written
// for the hot path of a Lambda authorizer: one HTTPS round trip per call,
// few allocations, no background goroutines, typed errors.
//
// # Requests
//
// Client.Do posts one command as a JSON array to "/", Client.Pipeline posts
// an array of commands to "/pipeline", Client.MultiExec to "/multi-exec"
// (one transaction). Script runs Lua with EVALSHA and EVAL. The token is
// sent as "Authorization: Bearer TOKEN", never in the URL.
//
// Every argument is sent as a JSON string (numbers formatted in base 10),
// which is what Redis receives anyway: RESP arguments are bulk strings. A
// JSON string can only carry valid UTF-8, so a string or []byte argument
// that is not valid UTF-8 is refused with ErrInvalidArgument before anything
// is sent (silently replacing bytes, as encoding/json does, would change a
// key or a value). Encode binary values (e.g. base64) before storing them.
// Request bodies are written by hand (no reflection) into pooled buffers;
// each request sends an exact-size copy as a *bytes.Reader, the one kind of
// body net/http writes in the same TCP segment as the headers.
//
// # Replies
//
// Replies are decoded into Value: nil, string, integer, float or array,
// with accessors (String, Int, Float, Bytes, Array, IsNil) that convert
// where Redis would (a counter read with GET is a string holding digits).
//
// With Config.Base64, the client sends "Upstash-Encoding: base64" and
// decodes the replies as @upstash/redis does: Upstash encodes every string
// in the result (at any depth) except the status reply "OK" when it is the
// whole result; integers, nil and error messages are not encoded. A string
// that is not valid base64 is kept as it came (again as @upstash/redis
// does), so an unencoded status reply stays readable. Base64 mode makes
// replies binary-safe: Value.Bytes returns exactly the stored bytes.
//
// # Errors
//
// Every failed call returns a *Error whose Kind says what went wrong:
// KindAuth (401/403), KindCommand (400, or one failing item of a pipeline,
// carrying the Redis message), KindServer (5xx), KindTransport (no complete
// exchange), KindTimeout (the context deadline, Config.Timeout or the HTTP
// client's own timeout; errors.Is(err, context.DeadlineExceeded) holds),
// KindCanceled (errors.Is(err, context.Canceled) holds) and KindMalformed
// (bad or truncated JSON, unexpected shape or status, a reply over
// Config.MaxReplyBytes). Errors never contain the token, the command or a
// key; messages from the server are bounded and scrubbed of the token.
//
// # Retries
//
// The client retries nothing, with one exception. Commands are in general
// not idempotent (a rate limiter's script charges tokens), and a request
// that failed in flight may or may not have run, so repeating it could
// charge twice; one attempt within the caller's deadline, then the caller's
// failure policy, is the intended use.
//
// The exception: Script.Run sends EVALSHA and, on a NOSCRIPT reply, sends
// EVAL once. That is safe because NOSCRIPT means the script did not run.
// EVAL also caches the script, so later calls go back to EVALSHA.
//
// Go's http.Transport does not retry these requests either: it re-sends a
// request on a fresh connection only when it is idempotent (GET, HEAD, ...)
// or when nothing was written and the body can be rewound with
// Request.GetBody. The client's POSTs leave GetBody unset, so not even the
// "nothing written on a stale keep-alive connection" case is re-sent. After
// a Lambda environment thaws, a keep-alive connection the server closed in
// the meantime can therefore fail one call with KindTransport; the caller's
// fallback absorbs it and the next call dials afresh.
//
// # Connections
//
// The default transport keeps connections alive (up to 128 idle per host),
// attempts HTTP/2 over TLS, bounds dialing and TLS handshakes to 5 s and
// does not ask for compression. Requests go to the transport directly, not
// through http.Client, which would clone the headers on every call for
// redirects the client never follows. Reply bodies
// are read to the end and closed so connections return to the pool; a reply
// longer than Config.MaxReplyBytes is abandoned (its connection closed).
//
// # Concurrency
//
// Client and Script are safe for concurrent use. Value is immutable. The
// package starts no goroutines and keeps no timers (a Lambda environment
// freezes between invocations); only the HTTP transport runs its usual
// per-connection goroutines.
package upstash
