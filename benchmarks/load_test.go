package benchmarks

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// load is a bounded closed-loop load generator: Workers goroutines, each
// sending one request at a time, for Warmup (not measured) and then
// Duration, and never more than MaxRequests requests in all.
type load struct {
	Workers     int
	Warmup      time.Duration
	Duration    time.Duration
	MaxRequests int64
	// Call makes worker w's request number n (0, 1, 2, ... across all
	// workers: n < MaxRequests) and returns its status. It is called
	// concurrently.
	Call func(w, n int) (status int, err error)
}

// httpCall returns a load.Call that sends next's requests with client and
// reads each reply to the end.
func httpCall(client *http.Client, next func(w, n int) (*http.Request, error)) func(w, n int) (int, error) {
	return func(w, n int) (int, error) {
		req, err := next(w, n)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
}

// loadResult is what the measured stretch saw: requests that started
// after the warm-up and finished within the stretch.
type loadResult struct {
	Total    int // requests completed, warm-up included
	Requests int
	Statuses map[int]int
	Errors   int
	Elapsed  time.Duration
	Latency  latencies
}

// perSecond is the measured throughput.
func (r loadResult) perSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

func (l load) run() loadResult {
	start := time.Now()
	measureFrom := start.Add(l.Warmup)
	stopAt := measureFrom.Add(l.Duration)
	var sent atomic.Int64
	type sample struct {
		status int
		d      time.Duration
	}
	perWorker := make([][]sample, l.Workers)
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := range l.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t0 := time.Now()
				n := sent.Add(1) - 1
				if !t0.Before(stopAt) || n >= l.MaxRequests {
					return
				}
				status, err := l.Call(w, int(n))
				if err != nil {
					status = -1
				}
				total.Add(1)
				if t1 := time.Now(); !t0.Before(measureFrom) && !t1.After(stopAt) {
					perWorker[w] = append(perWorker[w], sample{status, t1.Sub(t0)})
				}
			}
		}()
	}
	wg.Wait()
	end := minTime(time.Now(), stopAt)
	res := loadResult{Total: int(total.Load()), Statuses: map[int]int{}, Elapsed: end.Sub(measureFrom)}
	for _, ss := range perWorker {
		for _, s := range ss {
			res.Requests++
			res.Latency = append(res.Latency, s.d)
			if s.status < 0 {
				res.Errors++
			} else {
				res.Statuses[s.status]++
			}
		}
	}
	return res
}

// min of two instants.
func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// TestSmokeLoad checks the load generator's bounds and bookkeeping against
// a local server: the request cap holds, every measured request is counted
// once by status, and transport errors are counted apart.
func TestSmokeLoad(t *testing.T) {
	var served atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.URL.Path == "/deny" {
			w.WriteHeader(http.StatusTooManyRequests)
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(ts.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	t.Cleanup(client.CloseIdleConnections)

	tests := []struct {
		name string
		next func(w, i int) (*http.Request, error)
		want map[int]int
		errs int
	}{
		{
			name: "mixed statuses",
			next: func(w, i int) (*http.Request, error) {
				path := "/allow"
				if i%2 == 1 {
					path = "/deny"
				}
				return http.NewRequest(http.MethodPost, ts.URL+path, bytes.NewReader([]byte("{}")))
			},
			want: map[int]int{200: 100, 429: 100},
		},
		{
			name: "transport errors",
			next: func(w, i int) (*http.Request, error) {
				return http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil) // nothing listens on port 1
			},
			want: map[int]int{},
			errs: 200,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := served.Load()
			// Four workers, 50 requests each: the cap (200) ends the run
			// long before the duration does.
			got := load{Workers: 4, Duration: time.Minute, MaxRequests: 200, Call: httpCall(client, tc.next)}.run()
			if diff := cmp.Diff(tc.want, got.Statuses); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if got.Errors != tc.errs || got.Requests != 200 || got.Total != 200 || len(got.Latency) != 200 {
				t.Errorf("got %d requests (%d in all), %d errors, %d samples; want 200 (200), %d, 200", got.Requests, got.Total, got.Errors, len(got.Latency), tc.errs)
			}
			if n := served.Load() - before; n != int64(200-tc.errs) {
				t.Errorf("server saw %d requests, want %d", n, 200-tc.errs)
			}
		})
	}
}
