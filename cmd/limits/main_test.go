package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// t0 is the commands' clock in these tests: TTLs are relative to it, so
// they do not depend on the real date.
var t0 = time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)

const settingsKey = "bg:limits"

type result struct {
	code           int
	stdout, stderr string
}

// runAt runs limits with args against env at now (env nil: no database
// configured), with beforeWrite as the test hook.
func runAt(t *testing.T, env *upstashtest.Env, now time.Time, beforeWrite func(), args ...string) result {
	t.Helper()
	vars := map[string]string{}
	if env != nil {
		vars["UPSTASH_REDIS_REST_URL"], vars["UPSTASH_REDIS_REST_TOKEN"] = env.URL, env.Token
	}
	var out, errOut bytes.Buffer
	c := cli{getenv: func(k string) string { return vars[k] }, now: func() time.Time { return now }, beforeWrite: beforeWrite}
	code := run(context.Background(), args, c, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// mustRun runs args at now and fails the test unless they exit 0.
func mustRun(t *testing.T, env *upstashtest.Env, now time.Time, args ...string) string {
	t.Helper()
	r := runAt(t, env, now, nil, args...)
	if r.code != 0 {
		t.Fatalf("limits %s: exit %d, stderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// entry renders one stored change as decide.lua reads it.
func entry(scope string, factor float64, start time.Time, ramp time.Duration, expires time.Time) string {
	exp := int64(0)
	if !expires.IsZero() {
		exp = expires.UnixMilli()
	}
	return scope + "=" + strconv.FormatInt(int64(factor*1e6), 10) + "," + strconv.FormatInt(start.UnixMilli(), 10) + "," +
		strconv.FormatInt(ramp.Milliseconds(), 10) + "," + strconv.FormatInt(exp, 10)
}

// stored is the settings key's value and TTL ("" and -2 when absent; -1
// when it has no TTL).
func stored(t *testing.T, rs *redistest.Server) (string, int64) {
	t.Helper()
	if rs.Do(t, "EXISTS", settingsKey) == "0" {
		return "", -2
	}
	pttl, err := strconv.ParseInt(rs.Do(t, "PTTL", settingsKey), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return rs.Do(t, "GET", settingsKey), pttl
}

func TestSettingsKeyIsTheLimitersKey(t *testing.T) {
	if got := limiter.SettingsKey(""); got != settingsKey {
		t.Errorf("limiter.SettingsKey(\"\") = %q, want %q", got, settingsKey)
	}
}

func TestScaleAndClear(t *testing.T) {
	env := upstashtest.StartRedis(t)
	rs := env.Redis
	hour, ten := time.Hour, 10*time.Minute
	never := time.Time{}
	tests := []struct {
		name      string
		before    string // the key's value before ("" = absent)
		args      []string
		want      string        // the key's value after ("" = absent)
		wantTTL   time.Duration // 0 = none (PTTL -1), -1 = key absent
		wantOut   string        // stdout, exactly
		wantEntry bool          // stdout is a change as show prints it
	}{
		{
			name: "every limit", args: []string{"scale", "0.5"},
			want:    entry("*", 0.5, t0, 0, never),
			wantOut: `{"tier":"*","factorNow":0.5,"factor":0.5,"start":"2026-03-09T12:00:00Z","ramp":"0s","expires":null,"over":null}` + "\n",
		},
		{
			name: "one tier, for an hour, beside an endless change", before: entry("*", 0.5, t0, 0, never),
			args: []string{"scale", "--tier", "premium", "--for", "1h", "2"},
			want: entry("*", 0.5, t0, 0, never) + ";" + entry("premium", 2, t0, 0, t0.Add(hour)),
			wantOut: `{"tier":"premium","factorNow":2,"factor":2,"start":"2026-03-09T12:00:00Z","ramp":"0s",` +
				`"expires":"2026-03-09T13:00:00Z","over":"2026-03-09T13:00:00Z"}` + "\n",
		},
		{
			name: "a ramp ending before the expiry: the key lives until the ramp ends",
			args: []string{"scale", "--tier", "premium", "--ramp", "10m", "--for", "1h", "0.2"},
			want: entry("premium", 0.2, t0, ten, t0.Add(hour)), wantTTL: ten, wantEntry: true,
		},
		{
			name: "replaces its scope's change, keeps the others", before: entry("*", 3, t0, 0, never) + ";" + entry("premium", 0.2, t0, ten, never),
			args: []string{"scale", "--tier", "premium", "--for", "1h", "0.25"},
			want: entry("*", 3, t0, 0, never) + ";" + entry("premium", 0.25, t0, 0, t0.Add(hour)), wantEntry: true,
		},
		{
			name: "drops changes that are over", before: entry("*", 3, t0.Add(-2*hour), 0, t0.Add(-hour)) + ";" + entry("premium", 0.2, t0.Add(-hour), ten, never),
			args: []string{"scale", "--tier", "gold", "--for", "1h", "2"},
			want: entry("gold", 2, t0, 0, t0.Add(hour)), wantTTL: hour, wantEntry: true,
		},
		{
			name: "clear one tier", before: entry("*", 3, t0, 0, never) + ";" + entry("premium", 2, t0, 0, t0.Add(hour)),
			args: []string{"clear", "--tier", "premium"},
			want: entry("*", 3, t0, 0, never), wantOut: `{"cleared":["premium"]}` + "\n",
		},
		{
			name: "clear the last change deletes the key", before: entry("premium", 2, t0, 0, t0.Add(hour)),
			args: []string{"clear", "--tier", "premium"}, wantTTL: -1, wantOut: `{"cleared":["premium"]}` + "\n",
		},
		{
			name: "clear a tier without a change", before: entry("*", 3, t0, 0, never),
			args: []string{"clear", "--tier", "premium"}, want: entry("*", 3, t0, 0, never), wantOut: `{"cleared":[]}` + "\n",
		},
		{
			name: "clear everything", before: entry("*", 3, t0, 0, never) + ";" + entry("premium", 2, t0, 0, t0.Add(hour)),
			args: []string{"clear"}, wantTTL: -1, wantOut: `{"cleared":["*","premium"]}` + "\n",
		},
		{
			name: "clear with nothing stored", args: []string{"clear"}, wantTTL: -1, wantOut: `{"cleared":[]}` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs.Do(t, "DEL", settingsKey)
			if tt.before != "" {
				rs.Do(t, "SET", settingsKey, tt.before)
			}
			out := mustRun(t, env, t0, tt.args...)
			got, pttl := stored(t, rs)
			if got != tt.want {
				t.Errorf("stored %q, want %q", got, tt.want)
			}
			switch {
			case tt.wantTTL == -1 && pttl != -2:
				t.Errorf("PTTL = %d, want the key deleted", pttl)
			case tt.wantTTL == 0 && pttl != -1:
				t.Errorf("PTTL = %d, want no TTL (a change applies until cleared)", pttl)
			case tt.wantTTL > 0 && (pttl > tt.wantTTL.Milliseconds() || pttl < (tt.wantTTL-time.Minute).Milliseconds()):
				// Redis counts the TTL down in real time from the write.
				t.Errorf("PTTL = %d ms, want about %v", pttl, tt.wantTTL)
			}
			if tt.wantOut != "" && out != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tt.wantOut)
			}
			if tt.wantEntry {
				var v view
				if err := json.Unmarshal([]byte(out), &v); err != nil || strings.Count(out, "\n") != 1 {
					t.Errorf("stdout %q is not one change: %v", out, err)
				}
			}
		})
	}
}

func TestShow(t *testing.T) {
	env := upstashtest.StartRedis(t)
	rs := env.Redis
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	rs.Do(t, "SET", settingsKey, entry("*", 0.2, t0.Add(-5*time.Minute), 10*time.Minute, time.Time{})+";"+
		entry("premium", 2, t0, 0, t0.Add(time.Hour))+";junk;"+entry("gold", 1000, t0, 0, time.Time{}))
	rs.Do(t, "SET", "bg:warmup", "0123abcd="+strconv.FormatInt(t0.Add(-time.Minute).UnixMilli(), 10)+";bad;4567ef01="+strconv.FormatInt(t0.UnixMilli(), 10))
	out := mustRun(t, env, t0, "show")

	var changes []view
	var warmups []warmupView
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if strings.HasPrefix(line, `{"warmup"`) {
			var w warmupView
			if err := dec.Decode(&w); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			warmups = append(warmups, w)
			continue
		}
		var v view
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		changes = append(changes, v)
	}
	wantChanges := []view{
		// Half-way through a 10-minute ramp from 0.2: 0.6. The gold entry
		// (factor 1000, out of bounds) is skipped, as the script skips it.
		{Tier: "*", FactorNow: 0.6, Factor: 0.2, Start: *at("2026-03-09T11:55:00Z"), Ramp: "10m0s", Over: at("2026-03-09T12:05:00Z")},
		{Tier: "premium", FactorNow: 2, Factor: 2, Start: t0, Ramp: "0s", Expires: at("2026-03-09T13:00:00Z"), Over: at("2026-03-09T13:00:00Z")},
	}
	if diff := cmp.Diff(wantChanges, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	wantWarmups := []warmupView{{Warmup: "0123abcd", Start: t0.Add(-time.Minute)}, {Warmup: "4567ef01", Start: t0}}
	if diff := cmp.Diff(wantWarmups, warmups); diff != "" {
		t.Errorf("warm-ups (-want +got):\n%s", diff)
	}

	rs.Do(t, "DEL", settingsKey, "bg:warmup")
	if out := mustRun(t, env, t0, "show"); out != "" {
		t.Errorf("show with nothing stored printed %q, want nothing", out)
	}
}

func TestUsageErrors(t *testing.T) {
	env := upstashtest.Start(t)
	tests := []struct {
		name     string
		noEnv    bool
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "no command", args: nil, wantCode: 2, wantErr: "missing command"},
		{name: "unknown command", args: []string{"scael", "2"}, wantCode: 2, wantErr: `unknown command "scael"`},
		{name: "no factor", args: []string{"scale"}, wantCode: 2, wantErr: "scale takes one FACTOR after the flags; got 0"},
		{name: "two factors", args: []string{"scale", "1", "2"}, wantCode: 2, wantErr: "scale takes one FACTOR after the flags; got 2"},
		{name: "factor not a number", args: []string{"scale", "half"}, wantCode: 2, wantErr: `FACTOR "half" is not a number`},
		{name: "factor NaN", args: []string{"scale", "NaN"}, wantCode: 2, wantErr: `FACTOR "NaN" is not a number`},
		{name: "factor infinite", args: []string{"scale", "Inf"}, wantCode: 2, wantErr: `FACTOR "Inf" is not a number`},
		{name: "factor zero", args: []string{"scale", "0"}, wantCode: 2, wantErr: "FACTOR: factor 0 is outside 0.001..100"},
		{name: "factor too large", args: []string{"scale", "101"}, wantCode: 2, wantErr: "FACTOR: factor 101 is outside 0.001..100"},
		{name: "factor rounds to zero", args: []string{"scale", "0.0004"}, wantCode: 2, wantErr: "FACTOR: factor 0.0004 is outside"},
		{name: "flag after the factor", args: []string{"scale", "2", "--tier", "premium"}, wantCode: 2, wantErr: "flags come before arguments (found --tier after one)"},
		{name: "ramp not a duration", args: []string{"scale", "--ramp", "10", "2"}, wantCode: 2, wantErr: `--ramp "10" is not a duration`},
		{name: "ramp in fractions of a second", args: []string{"scale", "--ramp", "1.5s", "2"}, wantCode: 2, wantErr: "--ramp 1.5s must be whole seconds from 1s to 720h0m0s"},
		{name: "ramp too long", args: []string{"scale", "--ramp", "721h", "2"}, wantCode: 2, wantErr: "--ramp 721h0m0s must be whole seconds"},
		{name: "ramp negative", args: []string{"scale", "--ramp", "-1m", "2"}, wantCode: 2, wantErr: "--ramp -1m0s must be whole seconds"},
		{name: "for zero", args: []string{"scale", "--for", "0s", "2"}, wantCode: 2, wantErr: "--for 0s must be at least 1ms"},
		{name: "for not a duration", args: []string{"scale", "--for", "1d", "2"}, wantCode: 2, wantErr: `--for "1d" is not a duration`},
		{name: "bad tier", args: []string{"scale", "--tier", "pre mium", "2"}, wantCode: 2, wantErr: `--tier: tier name "pre mium" may only hold`},
		{name: "tier star", args: []string{"clear", "--tier", "*"}, wantCode: 2, wantErr: `--tier: tier name "*" may only hold`},
		{name: "empty tier", args: []string{"scale", "--tier", "", "2"}, wantCode: 2, wantErr: "--tier is empty (leave it out for every limit)"},
		{name: "clear takes no argument", args: []string{"clear", "premium"}, wantCode: 2, wantErr: "clear takes no arguments"},
		{name: "show takes no argument", args: []string{"show", "all"}, wantCode: 2, wantErr: "show takes no arguments"},
		{name: "unknown flag", args: []string{"show", "--tier", "x"}, wantCode: 2, wantErr: "flag provided but not defined: -tier"},
		{name: "no database", noEnv: true, args: []string{"show"}, wantCode: 2, wantErr: "no database: set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN (or pass --url and --token)"},
		{name: "no token", noEnv: true, args: []string{"show", "--url", env.URL}, wantCode: 2, wantErr: "no token: set UPSTASH_REDIS_REST_TOKEN or pass --token"},
		{name: "no URL", noEnv: true, args: []string{"show", "--token", env.Token}, wantCode: 2, wantErr: "no URL: set UPSTASH_REDIS_REST_URL or pass --url"},
		{name: "bad URL", noEnv: true, args: []string{"show", "--url", "ftp://example.com", "--token", env.Token}, wantCode: 2, wantErr: "URL must start with https://"},
		{name: "flags instead of the environment", noEnv: true, args: []string{"show", "--url", env.URL, "--token", env.Token}, wantCode: 0},
		{name: "wrong token", noEnv: true, args: []string{"scale", "--url", env.URL, "--token", "not-" + env.Token, "2"}, wantCode: 1, wantErr: "reading the limits: upstash: auth"},
		{name: "help", args: []string{"help"}, wantCode: 0, wantErr: "usage:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := env
			if tt.noEnv {
				e = nil
			}
			r := runAt(t, e, t0, nil, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tt.wantCode, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tt.wantErr)
			}
			if tt.wantCode != 0 && r.stdout != "" {
				t.Errorf("stdout %q, want nothing on failure", r.stdout)
			}
			if strings.Contains(r.stdout+r.stderr, env.Token) {
				t.Errorf("the token appears in the output:\n%s%s", r.stdout, r.stderr)
			}
		})
	}
}

// TestConcurrentChangesAreNotLost interleaves another command between a
// command's read and its write, and runs many commands at once: every
// change survives.
func TestConcurrentChangesAreNotLost(t *testing.T) {
	env := upstashtest.StartRedis(t)
	rs := env.Redis
	tests := []struct {
		name        string
		before      string
		args, other []string // other runs between args' read and write
		want        string
	}{
		{
			name: "scale while another tier is scaled",
			args: []string{"scale", "--tier", "premium", "2"}, other: []string{"scale", "--tier", "gold", "3"},
			want: entry("gold", 3, t0, 0, time.Time{}) + ";" + entry("premium", 2, t0, 0, time.Time{}),
		},
		{
			name: "scale the same tier: the later write wins", before: entry("premium", 0.5, t0, 0, time.Time{}),
			args: []string{"scale", "--tier", "premium", "2"}, other: []string{"scale", "--tier", "premium", "3"},
			want: entry("premium", 2, t0, 0, time.Time{}),
		},
		{
			name: "clear a tier while another is scaled", before: entry("premium", 0.5, t0, 0, time.Time{}),
			args: []string{"clear", "--tier", "premium"}, other: []string{"scale", "--tier", "gold", "3"},
			want: entry("gold", 3, t0, 0, time.Time{}),
		},
		{
			// clear applies to what is stored when it writes, as if it had
			// run after the other command.
			name: "clear everything while a tier is scaled", before: entry("*", 0.5, t0, 0, time.Time{}),
			args: []string{"clear"}, other: []string{"scale", "--tier", "gold", "3"},
			want: "",
		},
		{
			name: "scale while everything is cleared", before: entry("*", 0.5, t0, 0, time.Time{}),
			args: []string{"scale", "--tier", "premium", "2"}, other: []string{"clear"},
			want: entry("premium", 2, t0, 0, time.Time{}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs.Do(t, "DEL", settingsKey)
			if tt.before != "" {
				rs.Do(t, "SET", settingsKey, tt.before)
			}
			writes := 0
			hook := func() {
				writes++
				if writes == 1 {
					mustRun(t, env, t0, tt.other...)
				}
			}
			if r := runAt(t, env, t0, hook, tt.args...); r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if writes != 2 {
				t.Errorf("%d write attempts, want 2 (the first finds the key changed)", writes)
			}
			if got, _ := stored(t, rs); got != tt.want {
				t.Errorf("stored %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("many commands at once", func(t *testing.T) {
		rs.Do(t, "DEL", settingsKey)
		const n = 6
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out, errOut bytes.Buffer
				vars := map[string]string{"UPSTASH_REDIS_REST_URL": env.URL, "UPSTASH_REDIS_REST_TOKEN": env.Token}
				c := cli{getenv: func(k string) string { return vars[k] }, now: func() time.Time { return t0 }}
				if code := run(context.Background(), []string{"scale", "--tier", "t" + strconv.Itoa(i), strconv.Itoa(i + 2)}, c, &out, &errOut); code != 0 {
					t.Errorf("command %d: exit %d: %s", i, code, errOut.String())
				}
			}()
		}
		wg.Wait()
		var want []string
		for i := range n {
			want = append(want, entry("t"+strconv.Itoa(i), float64(i+2), t0, 0, time.Time{}))
		}
		if got, _ := stored(t, rs); got != strings.Join(want, ";") {
			t.Errorf("stored %q, want every change: %q", got, strings.Join(want, ";"))
		}
	})
}

// TestScalePrintsWhatShowReads: scale's output is the change as stored
// (to the millisecond), so it is the line show prints for it, even from a
// clock with finer readings.
func TestScalePrintsWhatShowReads(t *testing.T) {
	env := upstashtest.StartRedis(t)
	at := t0.Add(123456789 * time.Nanosecond) // 123.456789 ms past t0
	printed := mustRun(t, env, at, "scale", "--tier", "premium", "--for", "1h", "2")
	shown := mustRun(t, env, at, "show")
	if diff := cmp.Diff(shown, printed); diff != "" {
		t.Errorf("scale printed (+) what show does not read back (-):\n%s", diff)
	}
}
