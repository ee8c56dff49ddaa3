// Package syncbuf is a bytes.Buffer that several goroutines may write to at
// once: the sink tests give to loggers and child processes' output.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is a concurrency-safe byte buffer. The zero value is empty and
// ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
