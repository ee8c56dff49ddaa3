//go:build unix && !linux

package lambdaemu

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the process in its own process group, so kill reaches its
// children too.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killProcess(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
