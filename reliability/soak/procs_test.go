//go:build linux

package soak_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process this test started (directly): function processes
// from startapi, redis-server, dynalite's node.
type child struct {
	PID  int
	Comm string // the executable's name as the kernel keeps it (15 bytes at most)
}

// children lists the direct children of this process, from /proc.
func children() ([]child, error) {
	self := os.Getpid()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []child
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		j := bytes.IndexByte(stat, '(')
		if i < 0 || j < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == self {
			out = append(out, child{PID: pid, Comm: string(stat[j+1 : i])})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].PID < out[b].PID })
	return out, nil
}

// rssBytes is the resident set size of pid (VmRSS).
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// kill ends one of this test's own child processes with SIGKILL, by id.
func kill(c child) error { return syscall.Kill(c.PID, syscall.SIGKILL) }

// rssSampler records the RSS of this process and its children every
// interval until stopped.
type rssSampler struct {
	mu      sync.Mutex
	samples []rssSample
	stop    chan struct{}
	done    chan struct{}
}

type rssSample struct {
	At   time.Time
	PID  int
	Comm string // "self" for the test process
	RSS  int64
}

func startRSS(every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	now := time.Now()
	var batch []rssSample
	if rss, err := rssBytes(os.Getpid()); err == nil {
		batch = append(batch, rssSample{At: now, PID: os.Getpid(), Comm: "self", RSS: rss})
	}
	kids, _ := children()
	for _, c := range kids {
		if rss, err := rssBytes(c.PID); err == nil {
			batch = append(batch, rssSample{At: now, PID: c.PID, Comm: c.Comm, RSS: rss})
		}
	}
	s.mu.Lock()
	s.samples = append(s.samples, batch...)
	s.mu.Unlock()
}

// Stop ends sampling and returns every sample.
func (s *rssSampler) Stop() []rssSample {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}
