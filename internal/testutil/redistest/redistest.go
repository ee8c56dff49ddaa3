// Package redistest starts real redis-server processes for tests.
//
// Each server listens on 127.0.0.1 on a free port, keeps its data in a
// temporary directory, has persistence turned off and is stopped by t.Cleanup.
//
// When redis-server is not on PATH the test is skipped, unless the environment
// variable BUCKETGATE_INTEGRATION is "1" (as `make test` sets it), in which
// case the test fails: CI must never pass by skipping the real thing.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a missing integration
// dependency from a skip into a failure.
const RequireEnv = "BUCKETGATE_INTEGRATION"

// Server is a running redis-server. Addr is "127.0.0.1:PORT".
type Server struct {
	Addr string
	Port int

	t   testing.TB
	dir string
	cmd *exec.Cmd
}

// Need skips (or, under BUCKETGATE_INTEGRATION=1, fails) the test when the
// named program is not on PATH, and returns its path otherwise.
func Need(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s not found on PATH and %s=1: run `make test`, which installs it", program, RequireEnv)
		}
		t.Skipf("%s not found on PATH (set %s=1 to make this a failure)", program, RequireEnv)
	}
	return p
}

// Start launches a redis-server on a free loopback port and registers its
// shutdown with t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	Need(t, "redis-server")
	s := &Server{t: t, dir: t.TempDir()}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		s.Port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: could not start redis-server: %v", lastErr)
	return nil
}

func (s *Server) start() error {
	cmd := exec.Command("redis-server",
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.Port),
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "yes",
		"--loglevel", "warning",
	)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	// Drain output so the child never blocks on a full pipe; keep the tail for errors.
	tail := make(chan string, 1)
	go func() {
		var last []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			last = append(last, sc.Text())
			if len(last) > 20 {
				last = last[1:]
			}
		}
		tail <- strings.Join(last, "\n")
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := ping(s.Addr); err == nil {
			s.cmd = cmd
			return nil
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return fmt.Errorf("redis-server on %s did not answer PING: %s", s.Addr, <-tail)
}

// Stop kills the server. It is safe to call more than once.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts it again on the same port, with an
// empty data set (persistence is off). It is for tests of outages.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("redistest: restart on %s: %v", s.Addr, err)
}

// Do sends one command over a fresh connection and returns the raw RESP reply
// line(s) as text. It is meant for test setup and inspection (INFO, TTL,
// SCRIPT FLUSH, CONFIG), not for speed.
func (s *Server) Do(t testing.TB, args ...string) string {
	t.Helper()
	reply, err := do(s.Addr, args...)
	if err != nil {
		t.Fatalf("redistest: %s: %v", args[0], err)
	}
	return reply
}

func ping(addr string) error {
	reply, err := do(addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("unexpected PING reply %q", reply)
	}
	return nil
}

// do speaks just enough RESP2 for setup commands: it returns simple strings,
// errors (as Go errors), integers and bulk strings as text, and arrays as their
// elements joined by newlines.
func do(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis error: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for i := 0; i < n; i++ {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
