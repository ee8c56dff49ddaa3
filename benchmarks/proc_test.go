package benchmarks

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clockTick is the unit of utime/stime in /proc/PID/stat (USER_HZ, 100
// on every Linux the harness runs on).
const clockTick = 10 * time.Millisecond

// procStat reads a process's parent PID and CPU time (user + system) from
// /proc/PID/stat.
func procStat(pid int) (ppid int, cpu time.Duration, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces:
	// fields are counted after its closing parenthesis.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: utime/stime are not integers", pid)
	}
	return ppid, time.Duration(ut+st) * clockTick, nil
}

// cpuByPart is CPU time per part of a running system.
type cpuByPart map[string]time.Duration

// sampleCPU returns the CPU time used so far by this process, by the
// process localPID and its children (named by the directory of their
// executable, e.g. "AuthorizerFunction"), and by redis-server children of
// this process. localPID < 0: no such process.
func sampleCPU(t testing.TB, localPID int) cpuByPart {
	t.Helper()
	out := cpuByPart{}
	self := os.Getpid()
	if _, cpu, err := procStat(self); err == nil {
		out["test process"] = cpu
	} else {
		t.Logf("cpu accounting: %v", err)
		return nil
	}
	if localPID > 0 {
		if _, cpu, err := procStat(localPID); err == nil {
			out["cmd/local"] = cpu
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, cpu, err := procStat(pid)
		if err != nil {
			continue
		}
		switch {
		case localPID > 0 && ppid == localPID:
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
				out[filepath.Base(filepath.Dir(exe))+" processes"] += cpu
			}
		case ppid == self:
			// The executable's name will not do: Debian's redis-server is
			// a link to redis-check-rdb. The command name is right.
			if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "redis-server" {
				out["redis-server"] += cpu
			}
		}
	}
	return out
}

// since returns the CPU used between prev and c, per part.
func (c cpuByPart) since(prev cpuByPart) cpuByPart {
	d := cpuByPart{}
	for k, v := range c {
		d[k] = v - prev[k]
	}
	return d
}

// perRequest renders each part's CPU per request, in µs, largest first,
// and the total.
func (c cpuByPart) perRequest(requests int) string {
	if c == nil || requests == 0 {
		return "n/a"
	}
	names := make([]string, 0, len(c))
	var total time.Duration
	for k, v := range c {
		names = append(names, k)
		total += v
	}
	slices.SortFunc(names, func(a, b string) int { return int(c[b] - c[a]) })
	parts := make([]string, 0, len(names)+1)
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, float64(c[k].Microseconds())/float64(requests)))
	}
	parts = append(parts, fmt.Sprintf("**total %.0f**", float64(total.Microseconds())/float64(requests)))
	return strings.Join(parts, ", ")
}

// ceiling is the request rate the machine's CPUs could sustain at c's CPU
// cost per request, were the harness alone on the machine.
func (c cpuByPart) ceiling(requests int) string {
	var total time.Duration
	for _, v := range c {
		total += v
	}
	if c == nil || total <= 0 || requests == 0 {
		return "n/a"
	}
	perReq := total.Seconds() / float64(requests)
	return fmt.Sprintf("%.0f", float64(runtime.NumCPU())/perReq)
}

// TestSmokeProcStat reads this process's own /proc entry: the parser finds
// the parent and a CPU time that grows.
func TestSmokeProcStat(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	ppid, before, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ppid != os.Getppid() {
		t.Errorf("ppid = %d, want %d", ppid, os.Getppid())
	}
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		if _, after, _ := procStat(os.Getpid()); after > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time did not grow from %v in 5 s of busy loop (x=%d)", before, x)
		}
	}
}
