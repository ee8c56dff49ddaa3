package startapi

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder keeps every Write apart; safe for concurrent use.
type recorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestLockedWriterBatches(t *testing.T) {
	big := strings.Repeat("x", batchBytes)
	type step struct {
		advance time.Duration // before the write
		write   string        // "" = sync
	}
	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{
			name:  "a lone line goes straight through",
			steps: []step{{write: "a\n"}},
			want:  []string{"a\n"},
		},
		{
			name:  "lines within the window wait for one write",
			steps: []step{{write: "a\n"}, {advance: 100 * time.Microsecond, write: "b\n"}, {write: "c\n"}},
			want:  []string{"a\n"}, // b and c wait for the timer or sync
		},
		{
			name:  "sync writes what waits, in order",
			steps: []step{{write: "a\n"}, {write: "b\n"}, {write: "c\n"}, {}},
			want:  []string{"a\n", "b\nc\n"},
		},
		{
			name:  "after a quiet window, straight through again",
			steps: []step{{write: "a\n"}, {advance: batchWindow, write: "b\n"}},
			want:  []string{"a\n", "b\n"},
		},
		{
			name:  "a line behind waiting ones waits too, even after the window",
			steps: []step{{write: "a\n"}, {write: "b\n"}, {advance: 2 * batchWindow, write: "c\n"}, {}},
			want:  []string{"a\n", "b\nc\n"},
		},
		{
			name:  "a full buffer is written at once",
			steps: []step{{write: "a\n"}, {write: "b\n"}, {write: big}},
			want:  []string{"a\n", "b\n" + big},
		},
		{
			name:  "sync with nothing waiting writes nothing",
			steps: []step{{write: "a\n"}, {}, {}},
			want:  []string{"a\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			w := newLockedWriter(rec)
			w.now = clk.now
			w.delay = time.Hour // only sync and a full buffer write what waits
			t.Cleanup(w.sync)   // stops the timer
			for _, s := range tc.steps {
				clk.t = clk.t.Add(s.advance)
				if s.write == "" {
					w.sync()
					continue
				}
				if n, err := w.Write([]byte(s.write)); n != len(s.write) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if diff := cmp.Diff(tc.want, rec.got()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLockedWriterTimerFlushes: waiting lines reach the writer without a
// sync, once the window has passed.
func TestLockedWriterTimerFlushes(t *testing.T) {
	rec := &recorder{}
	w := newLockedWriter(rec)
	t.Cleanup(w.sync)
	w.now = func() time.Time { return time.Time{}.Add(time.Hour) } // every Write within the window of the first
	for _, s := range []string{"a\n", "b\n", "c\n"} {
		_, _ = w.Write([]byte(s))
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.got()) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if diff := cmp.Diff([]string{"a\n", "b\nc\n"}, rec.got()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

// TestLockedWriterConcurrent: lines written at once from many goroutines all
// arrive whole, each goroutine's in its order.
func TestLockedWriterConcurrent(t *testing.T) {
	rec := &recorder{}
	w := newLockedWriter(rec)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				_, _ = fmt.Fprintf(w, "g%d line %d\n", g, i)
			}
		}()
	}
	wg.Wait()
	w.sync()
	next := make([]int, writers)
	all := strings.Join(rec.got(), "")
	for _, l := range strings.Split(strings.TrimSuffix(all, "\n"), "\n") {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d line %d", &g, &i); err != nil || g < 0 || g >= writers {
			t.Fatalf("mangled line %q", l)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d arrived, want %d", g, i, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != lines {
			t.Errorf("goroutine %d: %d lines arrived, want %d", g, n, lines)
		}
	}
}
