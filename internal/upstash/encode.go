package upstash

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"
)

// Request bodies are JSON arrays written by hand into pooled buffers:
// encoding/json would box and reflect over every argument. Every argument is
// sent as a JSON string, which is what Redis receives anyway (all RESP
// arguments are bulk strings); numbers are formatted in base 10.

// buffer is a pooled byte slice for request and reply bodies.
type buffer struct{ b []byte }

const (
	initialBufferSize = 1 << 10
	maxPooledBuffer   = 64 << 10 // larger buffers are left to the GC
)

var bufferPool = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, initialBufferSize)} }}

func getBuffer() *buffer { return bufferPool.Get().(*buffer) }

func putBuffer(b *buffer) {
	if cap(b.b) > maxPooledBuffer {
		return
	}
	b.b = b.b[:0]
	bufferPool.Put(b)
}

// appendCommand appends args as one JSON array. pos is the index of the
// command within a pipeline (for error messages), or -1.
func appendCommand(b []byte, pos int, args []any) ([]byte, error) {
	if len(args) == 0 {
		if pos >= 0 {
			return b, fmt.Errorf("%w: command %d is empty", ErrInvalidArgument, pos)
		}
		return b, fmt.Errorf("%w: no command given", ErrInvalidArgument)
	}
	b = append(b, '[')
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendArg(b, a); err != nil {
			return b, argError(pos, i, err)
		}
	}
	return append(b, ']'), nil
}

// appendCommands appends cmds as a JSON array of arrays (a pipeline or
// transaction body).
func appendCommands(b []byte, cmds [][]any) ([]byte, error) {
	if len(cmds) == 0 {
		return b, fmt.Errorf("%w: no commands given", ErrInvalidArgument)
	}
	b = append(b, '[')
	for i, cmd := range cmds {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendCommand(b, i, cmd); err != nil {
			return b, err
		}
	}
	return append(b, ']'), nil
}

// appendScriptCall appends [cmd, body, len(keys), keys..., args..., sargs...].
func appendScriptCall(b []byte, cmd, body string, keys []string, args []any, sargs []string) ([]byte, error) {
	b = append(b, '[', '"')
	b = append(b, cmd...) // EVAL or EVALSHA: plain ASCII
	b = append(b, '"', ',')
	var ok bool
	if b, ok = appendString(b, body); !ok {
		return b, fmt.Errorf("%w: script is not valid UTF-8", ErrInvalidArgument)
	}
	b = append(b, ',', '"')
	b = strconv.AppendInt(b, int64(len(keys)), 10)
	b = append(b, '"')
	for i, k := range keys {
		b = append(b, ',')
		if b, ok = appendString(b, k); !ok {
			return b, fmt.Errorf("%w: key %d is not valid UTF-8", ErrInvalidArgument, i)
		}
	}
	for i, a := range args {
		b = append(b, ',')
		var err error
		if b, err = appendArg(b, a); err != nil {
			return b, fmt.Errorf("%w: script argument %d %w", ErrInvalidArgument, i, err)
		}
	}
	for i, a := range sargs {
		b = append(b, ',')
		if b, ok = appendString(b, a); !ok {
			return b, fmt.Errorf("%w: script argument %d is not valid UTF-8", ErrInvalidArgument, i)
		}
	}
	return append(b, ']'), nil
}

func argError(pos, i int, err error) error {
	if pos >= 0 {
		return fmt.Errorf("%w: command %d argument %d %w", ErrInvalidArgument, pos, i, err)
	}
	return fmt.Errorf("%w: argument %d %w", ErrInvalidArgument, i, err)
}

// argProblem describes why one argument cannot be encoded; it completes a
// sentence such as "argument 2 is not valid UTF-8". It never holds the value.
type argProblem string

func (p argProblem) Error() string { return string(p) }

const (
	errNotUTF8 argProblem = "is not valid UTF-8 (JSON strings cannot carry arbitrary bytes; encode binary values first)"
	errNaN     argProblem = "is NaN"
)

// appendArg appends one argument as a JSON string.
func appendArg(b []byte, a any) ([]byte, error) {
	var ok bool
	switch v := a.(type) {
	case string:
		b, ok = appendString(b, v)
	case []byte:
		b, ok = appendBytes(b, v)
	case int:
		return appendQuotedInt(b, int64(v)), nil
	case int64:
		return appendQuotedInt(b, v), nil
	case int32:
		return appendQuotedInt(b, int64(v)), nil
	case int16:
		return appendQuotedInt(b, int64(v)), nil
	case int8:
		return appendQuotedInt(b, int64(v)), nil
	case uint:
		return appendQuotedUint(b, uint64(v)), nil
	case uint64:
		return appendQuotedUint(b, v), nil
	case uint32:
		return appendQuotedUint(b, uint64(v)), nil
	case uint16:
		return appendQuotedUint(b, uint64(v)), nil
	case uint8:
		return appendQuotedUint(b, uint64(v)), nil
	case float64:
		return appendQuotedFloat(b, v, 64)
	case float32:
		return appendQuotedFloat(b, float64(v), 32)
	default:
		return b, argProblem("has unsupported type " + typeName(a) + " (want string, []byte, an integer or a float)")
	}
	if !ok {
		return b, errNotUTF8
	}
	return b, nil
}

func typeName(a any) string {
	if a == nil {
		return "nil"
	}
	return reflect.TypeOf(a).String()
}

func appendQuotedInt(b []byte, n int64) []byte {
	b = append(b, '"')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '"')
}

func appendQuotedUint(b []byte, n uint64) []byte {
	b = append(b, '"')
	b = strconv.AppendUint(b, n, 10)
	return append(b, '"')
}

// appendQuotedFloat formats f the shortest way that reads back exactly.
// Infinities become "inf" and "-inf", as Redis spells them (ZADD, ZRANGEBYSCORE).
func appendQuotedFloat(b []byte, f float64, bits int) ([]byte, error) {
	switch {
	case math.IsNaN(f):
		return b, errNaN
	case math.IsInf(f, 1):
		return append(b, `"inf"`...), nil
	case math.IsInf(f, -1):
		return append(b, `"-inf"`...), nil
	}
	b = append(b, '"')
	b = strconv.AppendFloat(b, f, 'g', -1, bits)
	return append(b, '"'), nil
}

// appendString appends s as a JSON string. It reports false, appending
// nothing useful, when s is not valid UTF-8: a JSON string cannot carry such
// bytes, and replacing them (as encoding/json does) would silently change a
// key or a value.
func appendString(b []byte, s string) ([]byte, bool) {
	if !utf8.ValidString(s) {
		return b, false
	}
	return appendEscaped(b, s), true
}

func appendBytes(b []byte, s []byte) ([]byte, bool) {
	if !utf8.Valid(s) {
		return b, false
	}
	return appendEscaped(b, s), true
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends the valid UTF-8 text s as a quoted JSON string,
// escaping only what JSON requires: '"', '\\' and control characters.
func appendEscaped[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
