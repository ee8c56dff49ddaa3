//go:build linux

package lambdaemu

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the process in its own process group (so kill reaches its
// children too) and has the kernel kill it if the emulator dies first.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killProcess(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
