/*
Copyright The Vessel Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command vessel-reaper runs a command (a hypervisor's libvirtd) as its
// child and reaps, at once, every process orphaned under it.
//
//	vessel-reaper PROGRAM [ARG...]
//
// libvirtd daemonizes each QEMU, so a QEMU's parent is the nearest "child
// subreaper" above libvirtd, or PID 1. When libvirtd destroys a domain it
// waits until the QEMU's PID is gone, and a dead process keeps its PID
// until its parent reaps it: under a PID 1 that reaps late (about 1 s on
// the Firecracker machines Vessel is developed on) every stop, delete and
// restart of a VM waited that long. Under vessel-reaper a QEMU that exits
// is reaped within microseconds.
//
// Signals the launcher sends (TERM, INT, HUP, QUIT, USR1, USR2) go on to
// the command; vessel-reaper exits as the command did, and the command is
// killed if vessel-reaper dies first (SIGKILL as a parent-death signal).
// Guests still running when the command exits go back to PID 1 and keep
// running.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: vessel-reaper PROGRAM [ARG...]")
		return 2
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "vessel-reaper: become a child subreaper: %v\n", err)
		return 1
	}
	// The parent-death signal fires when the thread that started the child
	// ends, not the process: keep this one.
	runtime.LockOSThread()
	sigs := make(chan os.Signal, 8)
	forwarded := []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
	signal.Notify(sigs, forwarded...)

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "vessel-reaper: %v\n", err)
		return 127
	}
	child := cmd.Process.Pid
	go func() {
		for s := range sigs {
			_ = syscall.Kill(child, s.(syscall.Signal))
		}
	}()
	// Reap everything; cmd.Wait is never called, so nothing else waits.
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vessel-reaper: wait: %v\n", err)
			return 1
		}
		if pid != child {
			continue // an orphan: reaped
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			return 128 + int(ws.Signal())
		}
	}
}
