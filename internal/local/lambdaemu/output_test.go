package lambdaemu

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recordingWriter keeps every Write apart.
type recordingWriter struct{ writes []string }

func (r *recordingWriter) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", maxLine)
	tests := []struct {
		name   string
		chunks []string // what the process writes, read by read
		want   []string // Writes to Config.Logs, flush included
	}{
		{
			name:   "one line",
			chunks: []string{"hello\n"},
			want:   []string{"[F] hello\n"},
		},
		{
			name:   "several lines in one read are a Write each",
			chunks: []string{"a\nb\n\nc\n"},
			want:   []string{"[F] a\n", "[F] b\n", "[F] \n", "[F] c\n"},
		},
		{
			name:   "a line split across reads",
			chunks: []string{"par", "tial\nnext", " line\n"},
			want:   []string{"[F] partial\n", "[F] next line\n"},
		},
		{
			name:   "carriage returns before the newline are dropped",
			chunks: []string{"dos\r\nmid\rdle\r\n"},
			want:   []string{"[F] dos\n", "[F] mid\rdle\n"},
		},
		{
			name:   "an unterminated last line is written at flush",
			chunks: []string{"done\nno newline"},
			want:   []string{"[F] done\n", "[F] no newline\n"},
		},
		{
			name:   "a line without newline reaching maxLine is written",
			chunks: []string{long[:maxLine-1], "yz"},
			want:   []string{"[F] " + long[:maxLine-1] + "yz\n"},
		},
		{
			name:   "complete lines before a long partial one",
			chunks: []string{"a\n" + long},
			want:   []string{"[F] a\n", "[F] " + long + "\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingWriter{}
			var seen []string
			onLine := func(l []byte) { seen = append(seen, "[F] "+string(l)+"\n") }
			w := &lineWriter{out: &lineOutput{out: rec, prefix: "[F] ", onLine: onLine}}
			for _, c := range tc.chunks {
				if n, err := w.Write([]byte(c)); n != len(c) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", c, n, err)
				}
			}
			w.flush()
			if diff := cmp.Diff(tc.want, rec.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, seen); diff != "" {
				t.Errorf("lines seen by OnLine (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLineOutputLine(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{name: "one line", in: "START RequestId: 1", want: []string{"[F] START RequestId: 1\n"}},
		{name: "every line prefixed", in: "END RequestId: 1\nREPORT RequestId: 1\tDuration: 1.00 ms", want: []string{"[F] END RequestId: 1\n", "[F] REPORT RequestId: 1\tDuration: 1.00 ms\n"}},
		{name: "trailing newlines dropped", in: "a\n\n", want: []string{"[F] a\n"}},
		{name: "empty", in: "", want: []string{"[F] \n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingWriter{}
			(&lineOutput{out: rec, prefix: "[F] "}).line(tc.in)
			if diff := cmp.Diff(tc.want, rec.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogEnd(t *testing.T) {
	tests := []struct {
		name string
		res  Result
		want []string
	}{
		{
			name: "warm, success",
			res:  Result{RequestID: "r1", Duration: 1234567 * time.Nanosecond},
			want: []string{"[F] END RequestId: r1\n", "[F] REPORT RequestId: r1\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 256 MB\n"},
		},
		{
			name: "cold start, error whose type spans lines",
			res:  Result{RequestID: "r2", Duration: 3 * time.Millisecond, ColdStart: true, InitDuration: 4567 * time.Microsecond, Error: &FunctionError{Type: "Bad\nType"}},
			want: []string{"[F] END RequestId: r2\n", "[F] REPORT RequestId: r2\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 256 MB\tInit Duration: 4.57 ms\tStatus: error\tError Type: Bad\n", "[F] Type\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingWriter{}
			f := &Function{cfg: Config{MemoryMB: 256}, logs: &lineOutput{out: rec, prefix: "[F] "}}
			f.logEnd(tc.res)
			if diff := cmp.Diff(tc.want, rec.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTraceID(t *testing.T) {
	shape := regexp.MustCompile(`^Root=1-([0-9a-f]{8,})-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$`)
	for _, at := range []time.Time{time.Unix(0, 0), time.Unix(0x1234, 0), time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), time.Unix(1<<33, 0)} {
		id := traceID(at)
		m := shape.FindStringSubmatch(id)
		if m == nil {
			t.Errorf("traceID(%v) = %q, not an X-Ray trace header", at, id)
			continue
		}
		if want := fmt.Sprintf("%08x", at.Unix()); m[1] != want {
			t.Errorf("traceID(%v) root time = %s, want %s", at, m[1], want)
		}
	}
	if traceID(time.Unix(1, 0)) == traceID(time.Unix(1, 0)) {
		t.Error("two trace IDs are equal")
	}
}
