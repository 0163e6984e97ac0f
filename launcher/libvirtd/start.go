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

package libvirtd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Daemons are a host's virtlogd and libvirtd run by Start.
type Daemons struct {
	Host  Host
	procs []*daemon // virtlogd, libvirtd
}

type daemon struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start ensures the host (see Host.Ensure) and runs its virtlogd and
// libvirtd as children of this process, each in its own session, until
// Stop; it waits until libvirtd answers, then saves the capabilities seed.
// It is for tests and tools that need a private libvirtd for a while; the
// launcher supervises the same commands instead. The daemons' output goes
// to virtlogd.log and libvirtd.log in the host's directory.
func Start(ctx context.Context, h Host) (*Daemons, error) {
	if err := h.Ensure(ctx); err != nil {
		return nil, err
	}
	d := &Daemons{Host: h}
	for _, c := range []struct {
		name string
		cmd  Command
	}{{"virtlogd", h.VirtlogdCommand()}, {"libvirtd", h.LibvirtdCommand()}} {
		p, err := startDaemon(h, c.name, c.cmd)
		if err != nil {
			d.Stop()
			return nil, err
		}
		d.procs = append(d.procs, p)
	}
	if err := d.waitReady(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	if err := h.SaveCapabilities(); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

func startDaemon(h Host, name string, c Command) (*daemon, error) {
	log, err := os.OpenFile(filepath.Join(h.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("libvirt host %s: open the log of %s: %w", h.Name, name, err)
	}
	defer log.Close()
	argv := c.Argv()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("libvirt host %s: start %s: %w", h.Name, name, err)
	}
	p := &daemon{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (d *Daemons) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		for _, p := range d.procs {
			select {
			case <-p.exited:
				return fmt.Errorf("libvirt host %s: %s exited while starting (%s); see %s",
					d.Host.Name, p.name, p.cmd.ProcessState, filepath.Join(d.Host.Dir, p.name+".log"))
			default:
			}
		}
		err := d.Host.Ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("libvirt host %s: libvirtd does not answer: %w (last: %v)", d.Host.Name, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Libvirtd is the pid of the running libvirtd (of the vessel-reaper it
// runs under, with Host.Reaper).
func (d *Daemons) Libvirtd() int { return d.procs[len(d.procs)-1].cmd.Process.Pid }

// Stop ends the daemons, libvirtd first: SIGTERM, then SIGKILL after 10 s.
// The host's guests keep running; Host.Remove ends them.
func (d *Daemons) Stop() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	d.procs = nil
}
