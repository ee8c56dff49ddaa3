package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketgate/bucketgate/internal/local/lambdaemu"
	"github.com/bucketgate/bucketgate/internal/testutil/syncbuf"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// primeWarning is what the authorizer logs when Prime fails at init
// (internal/authorizer/build.go).
const primeWarning = "could not reach Upstash at start"

// emfRecord is what the prime figure reads from an EMF line.
type emfRecord struct {
	DecisionLatency float64  // ms
	UpstashLatency  *float64 // ms; nil when no Upstash call
	Source          string
}

// coldProcess is one fresh authorizer process's decisions.
type coldProcess struct {
	init      time.Duration   // process start to its first GET /next
	durations []time.Duration // per invocation: hand-off to the process to its result
	emf       []emfRecord     // per invocation, in order
	logs      string
}

// runColdProcess starts a fresh process of exe (function name) through the
// Runtime API emulation with env and sends it primeDecisions invocations,
// one after another, then primeIdle more, each after a pause of
// primeIdleGap; invocation i is for the anonymous caller ip(i). It
// collects the EMF lines the process writes.
func runColdProcess(t testing.TB, name, exe string, env map[string]string, ip func(i int) string) coldProcess {
	t.Helper()
	logs := &syncbuf.Buffer{}
	var mu sync.Mutex
	var emf []emfRecord
	f, err := lambdaemu.New(lambdaemu.Config{
		Name: name, Executable: exe, Env: env, MaxProcs: 1, Logs: logs, Timeout: 30 * time.Second,
		MemoryMB: 256, // the template's
		OnLine: func(line []byte) {
			if !strings.HasPrefix(string(line), `{"_aws"`) {
				return
			}
			var r emfRecord
			if err := json.Unmarshal(line, &r); err == nil {
				mu.Lock()
				emf = append(emf, r)
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatalf("lambdaemu: %v", err)
	}
	defer f.Close()
	var p coldProcess
	for i := 0; i < primeDecisions+primeIdle; i++ {
		if i >= primeDecisions {
			time.Sleep(primeIdleGap)
		}
		ev, err := json.Marshal(anonymousEvent(ip(i)))
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.Invoke(context.Background(), ev)
		if err != nil || res.Error != nil {
			t.Fatalf("%s, invocation %d: %v %v; logs:\n%s", name, i+1, err, res.Error, logs.String())
		}
		if i == 0 {
			if !res.ColdStart {
				t.Fatalf("first invocation was not a cold start")
			}
			p.init = res.InitDuration
		}
		p.durations = append(p.durations, res.Duration)
	}
	_ = f.Close()
	mu.Lock()
	p.emf = emf
	mu.Unlock()
	p.logs = logs.String()
	return p
}

// caBundle writes the system's CA bundle (when there is one) followed by
// the test server's certificate to a file for SSL_CERT_FILE, so that a
// fresh process loads as many roots as it would in Lambda and trusts the
// test server too.
func caBundle(t testing.TB, serverCA string) string {
	t.Helper()
	var b []byte
	for _, sys := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"} {
		if data, err := os.ReadFile(sys); err == nil {
			b = append(data, '\n')
			break
		}
	}
	own, err := os.ReadFile(serverCA)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca-bundle.pem")
	if err := os.WriteFile(path, append(b, own...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// primeCondition is one row of the prime figure.
type primeCondition struct {
	name    string
	network string
	oneWay  time.Duration // held each way by a delayProxy (with the TCP handshake modelled)
	prime   bool          // Upstash reachable at init (else the first connection is refused)
	down    string        // "refused" or "blackhole": Upstash down throughout
	oneRoot bool          // SSL_CERT_FILE holds the test certificate only, not the system's roots
	runs    int
}

// primeDecisions is the back-to-back invocations per process: the first,
// and the steady state from the fourth on. Then primeIdle more, each after
// a pause of primeIdleGap: a warm container's decision after a short idle
// spell, which pays the wake-up of parked threads and cold caches the
// back-to-back ones do not.
const (
	primeDecisions = 9
	primeSteadyAt  = 3 // index of the first steady invocation
	primeIdle      = 3
	primeIdleGap   = 50 * time.Millisecond
)

// primeRow is a condition's figures, medians over its processes.
type primeRow struct {
	cond                      primeCondition
	init                      latencies
	first, steady, afterIdle  latencies // Duration, per process (steady, afterIdle: the process's median)
	firstEMF, steadyEMF       latencies // DecisionLatency, per process
	firstUp, steadyUp         latencies // UpstashLatency, per process
	firstSources, warnedCount int
	sources                   map[string]int
}

// measurePrime runs c.runs fresh processes of exe for condition c against
// up (https), each with a proxy of its own; process r's callers are
// ipOf(block+r, base+i).
func measurePrime(t testing.TB, exe, caFile string, up *upstashtest.Env, c primeCondition, block, base int) primeRow {
	certDir := "" // Go's default: it also reads /etc/ssl/certs and /etc/pki/tls/certs
	if c.oneRoot {
		caFile, certDir = up.CAFile, t.TempDir() // an empty directory: no system roots at all
	}
	t.Helper()
	row := primeRow{cond: c, sources: map[string]int{}}
	for r := 0; r < c.runs; r++ {
		var url string
		switch c.down {
		case "refused":
			url = strings.Replace(closedURL(t), "http://", "https://", 1)
		case "blackhole":
			url = startProxy(t, up.URL, 0, proxyConfig{Blackhole: true}).URL
		default:
			cfg := proxyConfig{Handshake: true}
			if !c.prime {
				cfg.RefuseFirst = 1
			}
			url = startProxy(t, up.URL, c.oneWay, cfg).URL
		}
		env := map[string]string{
			"UPSTASH_REDIS_REST_URL": url, "UPSTASH_REDIS_REST_TOKEN": up.Token, "SSL_CERT_FILE": caFile,
			"API_KEYS_TABLE": "bucketgate-keys", "LOG_LEVEL": "info",
		}
		if certDir != "" {
			env["SSL_CERT_DIR"] = certDir
		}
		p := runColdProcess(t, "AuthorizerFunction", exe, env, func(i int) string { return ipOf(block+r, base+i) })
		if len(p.emf) != len(p.durations) {
			t.Fatalf("%d EMF lines for %d invocations; logs:\n%s", len(p.emf), len(p.durations), p.logs)
		}
		row.init = append(row.init, p.init)
		row.first = append(row.first, p.durations[0])
		row.steady = append(row.steady, latencies(p.durations[primeSteadyAt:primeDecisions]).pct(0.5))
		row.afterIdle = append(row.afterIdle, latencies(p.durations[primeDecisions:]).pct(0.5))
		var steadyEMF, steadyUp latencies
		for i, e := range p.emf {
			d := time.Duration(e.DecisionLatency * float64(time.Millisecond))
			var u time.Duration
			if e.UpstashLatency != nil {
				u = time.Duration(*e.UpstashLatency * float64(time.Millisecond))
			}
			if i == 0 {
				row.firstEMF = append(row.firstEMF, d)
				row.firstUp = append(row.firstUp, u)
				row.sources[e.Source]++
			} else if i >= primeSteadyAt && i < primeDecisions {
				steadyEMF = append(steadyEMF, d)
				steadyUp = append(steadyUp, u)
			}
		}
		row.steadyEMF = append(row.steadyEMF, steadyEMF.pct(0.5))
		row.steadyUp = append(row.steadyUp, steadyUp.pct(0.5))
		warned := strings.Contains(p.logs, primeWarning)
		if warned {
			row.warnedCount++
		}
		if wantWarn := !c.prime || c.down != ""; warned != wantWarn {
			t.Errorf("%s, run %d: Prime warning logged %v, want %v; logs:\n%s", c.name, r+1, warned, wantWarn, p.logs)
		}
	}
	return row
}

// floorProcess starts a fresh process of the runtime floor (testdata/
// floorfn) and returns the Duration of its first invocation and the
// medians of its steady ones and of those after idle spells, counted as
// for the authorizer.
func floorProcess(t testing.TB, exe string) (first, steady, afterIdle time.Duration) {
	t.Helper()
	ds := latencies(runColdProcess(t, "Floor", exe, nil, func(i int) string { return ipOf(250, i) }).durations)
	return ds[0], ds[primeSteadyAt:primeDecisions].pct(0.5), ds[primeDecisions:].pct(0.5)
}

// buildFloor builds testdata/floorfn for this machine.
func buildFloor(t testing.TB) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "floorfn")
	if out, err := exec.Command("go", "build", "-o", exe, "./testdata/floorfn").CombinedOutput(); err != nil {
		t.Fatalf("building the runtime floor: %v\n%s", err, out)
	}
	return exe
}

// TestSmokeFloor runs one process of the runtime floor as the prime figure
// does: it starts, answers every invocation, and reports durations.
func TestSmokeFloor(t *testing.T) {
	first, steady, idle := floorProcess(t, buildFloor(t))
	if first <= 0 || steady <= 0 || idle <= 0 {
		t.Errorf("runtime floor: first %v, steady %v, after idle %v; want all measured", first, steady, idle)
	}
}

// benchPrime is the "prime" figure: the first decision of a fresh
// authorizer process against a steady-state one, with Upstash over TLS at
// +1 ms and +5 ms, with Prime (Upstash reachable at init) and without it
// (the first connection refused, so Prime fails and the first decision
// connects); and init and the first decision with Upstash down.
func benchPrime(t *testing.T) {
	rep := newReport(t, "First decision of a cold container")
	exe := makeBuild(t, "build-AuthorizerFunction", filepath.Join(t.TempDir(), "host"), runtime.GOARCH)
	floorExe := buildFloor(t)
	up := upstashtest.StartTLS(t)
	if up.Redis == nil {
		t.Fatal("prime: needs redis-server behind upstashlocal")
	}
	ca := caBundle(t, up.CAFile)
	const runs = 15
	conds := []primeCondition{
		{name: "Prime", network: "loopback (proxy, nothing added)", oneWay: 0, prime: true, runs: runs},
		{name: "no Prime", network: "loopback (proxy, nothing added)", oneWay: 0, prime: false, runs: runs},
		{name: "Prime", network: "+1 ms round trip", oneWay: 500 * time.Microsecond, prime: true, runs: runs},
		{name: "no Prime", network: "+1 ms round trip", oneWay: 500 * time.Microsecond, prime: false, runs: runs},
		{name: "Prime, 1 root", network: "+1 ms round trip", oneWay: 500 * time.Microsecond, prime: true, oneRoot: true, runs: runs},
		{name: "no Prime, 1 root", network: "+1 ms round trip", oneWay: 500 * time.Microsecond, prime: false, oneRoot: true, runs: runs},
		{name: "Prime", network: "+5 ms round trip", oneWay: 2500 * time.Microsecond, prime: true, runs: runs},
		{name: "no Prime", network: "+5 ms round trip", oneWay: 2500 * time.Microsecond, prime: false, runs: runs},
		{name: "Upstash down: connection refused", network: "–", down: "refused", runs: 5},
		{name: "Upstash down: accepts, never answers", network: "–", down: "blackhole", runs: 5},
	}
	// Interleave: each round runs one process of every condition, so that
	// drift on the machine hits all conditions alike.
	rows := make([]primeRow, len(conds))
	for i := range rows {
		rows[i] = primeRow{cond: conds[i], sources: map[string]int{}}
	}
	var floorFirst, floorSteady, floorIdle latencies
	for r := 0; r < runs; r++ {
		ff, fs, fi := floorProcess(t, floorExe)
		floorFirst, floorSteady, floorIdle = append(floorFirst, ff), append(floorSteady, fs), append(floorIdle, fi)
		for i, c := range conds {
			if r >= c.runs {
				continue
			}
			one := c
			one.runs = 1
			got := measurePrime(t, exe, ca, up, one, 100+r, 16*i)
			rows[i].init = append(rows[i].init, got.init...)
			rows[i].first = append(rows[i].first, got.first...)
			rows[i].steady = append(rows[i].steady, got.steady...)
			rows[i].afterIdle = append(rows[i].afterIdle, got.afterIdle...)
			rows[i].firstEMF = append(rows[i].firstEMF, got.firstEMF...)
			rows[i].steadyEMF = append(rows[i].steadyEMF, got.steadyEMF...)
			rows[i].firstUp = append(rows[i].firstUp, got.firstUp...)
			rows[i].steadyUp = append(rows[i].steadyUp, got.steadyUp...)
			rows[i].warnedCount += got.warnedCount
			for k, v := range got.sources {
				rows[i].sources[k] += v
			}
		}
	}

	rep.line("Measured with `%s`; %s.", benchCommand("prime"), rep.machine)
	rep.line("Fresh processes of the authorizer binary (`make build-AuthorizerFunction` for the host) through the Runtime API")
	rep.line("emulation (internal/local/lambdaemu), production wiring (API_KEYS_TABLE; anonymous callers need no key lookup),")
	rep.line("one process of each condition per round, %d rounds. Upstash: upstashlocal over HTTPS (self-signed certificate, HTTP/2)", runs)
	rep.line("over redis-server; the process trusts it through SSL_CERT_FILE = the system's CA bundle plus that certificate (Go")
	rep.line("also reads the default certificate directories, as in Lambda). Between them a proxy of its own per process holding each direction's bytes for")
	rep.line("half the added round trip, and the first bytes of each connection one round trip more (the TCP handshake). \"no")
	rep.line("Prime\": the proxy refuses the first connection, so Prime fails at init (its warning is logged) and the first")
	rep.line("decision opens the connection. Each process decides %d anonymous callers, one after another; first = the first", primeDecisions)
	rep.line("decision, steady = the median of decisions %d–%d of the same process, after idle = the median of %d more, each after", primeSteadyAt+1, primeDecisions, primeIdle)
	rep.line("a %s pause (a warm container's decision after a short idle spell). Duration: the emulator's, from handing the", primeIdleGap)
	rep.line("invocation to the process to its response; decision: the handler's own DecisionLatency (EMF line). Medians over")
	rep.line("processes; init = process start to its first GET /next (Go runtime, package init, main: clients built, Prime).")
	rep.line("UpstashLatency: the limiter's Upstash call alone (EMF line). \"1 root\": SSL_CERT_FILE holds the test certificate only")
	rep.line("and SSL_CERT_DIR names an empty directory, so that the process parses no system roots (what loading them costs is")
	rep.line("the difference to the rows above).")
	rep.line("")
	var table [][]string
	for _, r := range rows {
		if r.cond.down != "" {
			continue
		}
		f, s, idle := r.first.pct(0.5), r.steady.pct(0.5), r.afterIdle.pct(0.5)
		fe, se := r.firstEMF.pct(0.5), r.steadyEMF.pct(0.5)
		fu, su := r.firstUp.pct(0.5), r.steadyUp.pct(0.5)
		table = append(table, []string{r.cond.network, r.cond.name, fmt.Sprintf("%d", len(r.init)), fmtDur(r.init.pct(0.5)),
			fmtDur(f), fmtDur(s), "**" + ratio(f, s) + "**", fmtDur(idle), ratio(f, idle), fmtDur(fe), fmtDur(se), ratio(fe, se),
			fmtDur(fu), fmtDur(su), ratio(fu, su),
			fmt.Sprint(r.sources), fmt.Sprintf("%d / %d", r.warnedCount, len(r.init))})
	}
	rep.table([]string{"network", "init", "processes", "init p50", "first decision (Duration) p50", "steady p50", "first / steady",
		"after idle p50", "first / after idle", "first (DecisionLatency) p50", "steady p50", "first / steady", "first (UpstashLatency) p50", "steady p50", "first / steady",
		"first decision's source", "Prime warning logged"}, table)
	var added []string
	for i := 0; i+1 < len(rows); i += 2 {
		if rows[i].cond.down == "" && rows[i].cond.prime && !rows[i+1].cond.prime {
			added = append(added, fmt.Sprintf("%s, %s: %s", rows[i].cond.network, rows[i].cond.name, fmtDur(rows[i].init.pct(0.5)-rows[i+1].init.pct(0.5))))
		}
	}
	rep.line("Init time Prime adds (init p50 with Prime − without): %s.", strings.Join(added, "; "))
	rep.line("")
	ff, fs, fi := floorFirst.pct(0.5), floorSteady.pct(0.5), floorIdle.pct(0.5)
	rep.line("Runtime floor: a Go function that decides nothing (benchmarks/testdata/floorfn: decodes the same event, answers a")
	rep.line("fixed Allow through the authorizer's Runtime API loop, internal/runtimeapi, warmed at init as the authorizer's is), %d", len(floorFirst))
	rep.line("fresh processes, one per round, through the same emulation: first invocation p50 %s, steady p50 %s, after a %s", fmtDur(ff), fmtDur(fs), primeIdleGap)
	rep.line("pause p50 %s (first − steady %s). A function on this loop pays that much more on its first invocation than on", fmtDur(fi), fmtDur(ff-fs))
	rep.line("back-to-back ones, and about as much again after an idle spell; the authorizer's first − steady above includes it.")
	rep.line("")

	var dtable [][]string
	for _, r := range rows {
		if r.cond.down == "" {
			continue
		}
		dtable = append(dtable, []string{r.cond.name, fmt.Sprintf("%d", len(r.init)), fmtDur(r.init.pct(0.5)), fmtDur(r.init.pct(1)),
			fmtDur(r.first.pct(0.5)), fmtDur(r.firstEMF.pct(0.5)), fmt.Sprint(r.sources), fmtDur(r.steady.pct(0.5)),
			fmt.Sprintf("%d / %d", r.warnedCount, len(r.init))})
	}
	rep.line("With Upstash down (LIMITER_TIMEOUT at its default, 150 ms; failure mode fallback): init completes and decisions")
	rep.line("fall back to the container's memory. \"refused\": nothing listens on the port; \"never answers\": the proxy accepts")
	rep.line("connections and forwards nothing. steady: decisions %d–%d, once the circuit breaker (3 failures) is open.", primeSteadyAt+1, primeDecisions)
	rep.line("")
	rep.table([]string{"Upstash", "processes", "init p50", "init max", "first decision (Duration) p50", "first (DecisionLatency) p50", "first decision's source", "steady (Duration) p50", "Prime warning logged"}, dtable)
}
