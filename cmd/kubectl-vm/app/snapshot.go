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

package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// defaultWaitTimeout bounds --wait: a snapshot takes under a second and a
// restore a few, but a busy host or an agent that is down (the apiserver
// fails such requests after 30 s) may take longer.
const defaultWaitTimeout = 2 * time.Minute

func newSnapshotCommand(o *Options) *cobra.Command {
	var noMemory, retain, wait bool
	timeout := defaultWaitTimeout
	cmd := &cobra.Command{
		Use:   "snapshot VM [NAME]",
		Short: "Take a snapshot of a VM",
		Long: `Take a snapshot of a VM: a VirtualMachineSnapshot named NAME (default:
VM-YYYYMMDD-HHMMSS). The node agent keeps it inside the VM's disk images on
its hypervisor (a libvirt internal snapshot).

A snapshot of a running VM also holds the guest's memory, so a restore
resumes the guest exactly where it was. With --no-memory a restore boots the
guest from the disks as they were instead. A snapshot of a stopped VM holds
its disks only.`,
		Example: `  kubectl vm snapshot demo --wait
  kubectl vm snapshot demo before-upgrade --no-memory --retain`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("snapshot takes a VM name and, optionally, a snapshot name, got %d arguments\nUsage: %s", len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			name := t.Name + "-" + time.Now().UTC().Format("20060102-150405")
			if len(args) == 2 {
				name = args[1]
			}
			memory := !noMemory
			policy := v1alpha1.SnapshotDeletionPolicyDelete
			if retain {
				policy = v1alpha1.SnapshotDeletionPolicyRetain
			}
			snaps := t.Client.VesselV1alpha1().VirtualMachineSnapshots(t.Namespace)
			start := time.Now()
			created, err := snaps.Create(cmd.Context(), &v1alpha1.VirtualMachineSnapshot{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: t.Name, IncludeMemory: &memory, DeletionPolicy: policy},
			}, metav1.CreateOptions{})
			if err != nil {
				return explainCreate(err, "snapshot", t)
			}
			if !wait {
				fmt.Fprintf(o.Out, "virtualmachinesnapshot.vessel.dev/%s created\n", created.Name)
				return nil
			}
			ref := t.Namespace + "/" + created.Name
			p := &progress{out: o.Out, prefix: "snapshot " + ref + ": "}
			lw := byName(created.Name, snaps.List, snaps.Watch)
			var last *v1alpha1.VirtualMachineSnapshot
			err = waitUntil(cmd.Context(), timeout, lw, &v1alpha1.VirtualMachineSnapshot{}, func(obj runtime.Object) (bool, error) {
				s := obj.(*v1alpha1.VirtualMachineSnapshot)
				if s.UID != created.UID {
					return false, fmt.Errorf("snapshot %s was deleted", ref)
				}
				last = s
				p.phase(string(orPending(s.Status.Phase)))
				return s.Status.Phase == v1alpha1.SnapshotSucceeded || s.Status.Phase == v1alpha1.SnapshotFailed, nil
			})
			if err != nil {
				p.end("")
				return waitError(err, "snapshot "+ref, timeout, last != nil, func() string { return string(orPending(last.Status.Phase)) })
			}
			if last.Status.Phase == v1alpha1.SnapshotFailed {
				p.end("")
				return fmt.Errorf("snapshot %s failed: %s", ref, last.Status.Error)
			}
			p.end(fmt.Sprintf(" (%s) in %.1fs", describeSnapshot(last), time.Since(start).Seconds()))
			return nil
		},
	}
	cmd.Flags().BoolVar(&noMemory, "no-memory", false, "keep only the disks: a restore boots the guest from them instead of resuming it")
	cmd.Flags().BoolVar(&retain, "retain", false, "keep the snapshot data on the hypervisor when the snapshot is deleted (deletionPolicy Retain)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the snapshot is ready (or failed), printing its progress")
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "how long --wait waits")
	return cmd
}

func newRestoreCommand(o *Options) *cobra.Command {
	var wait bool
	timeout := defaultWaitTimeout
	cmd := &cobra.Command{
		Use:   "restore VM SNAPSHOT",
		Short: "Return a VM to one of its snapshots",
		Long: `Return a VM to a snapshot taken of it, by creating a VirtualMachineRestore.

The node agent reverts the VM's disks, and its memory when the snapshot holds
it: a guest that should run then resumes exactly where it was when the
snapshot was taken (no reboot). A snapshot without memory is restored with the
guest off, and the guest boots from the reverted disks. A VM whose run
strategy says it should not run gets its disks reverted and stays stopped.
Everything written since the snapshot is lost.`,
		Example: `  kubectl vm restore demo demo-20261125-101500 --wait`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("restore takes a VM name and a snapshot name, got %d arguments\nUsage: %s", len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			restores := t.Client.VesselV1alpha1().VirtualMachineRestores(t.Namespace)
			start := time.Now()
			created, err := restores.Create(cmd.Context(), &v1alpha1.VirtualMachineRestore{
				ObjectMeta: metav1.ObjectMeta{GenerateName: t.Name + "-restore-"},
				Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: t.Name, SnapshotName: args[1]},
			}, metav1.CreateOptions{})
			if err != nil {
				return explainCreate(err, "restore", t)
			}
			if !wait {
				fmt.Fprintf(o.Out, "virtualmachinerestore.vessel.dev/%s created\n", created.Name)
				return nil
			}
			ref := t.Namespace + "/" + created.Name
			p := &progress{out: o.Out, prefix: "restore " + ref + ": "}
			lw := byName(created.Name, restores.List, restores.Watch)
			var last *v1alpha1.VirtualMachineRestore
			err = waitUntil(cmd.Context(), timeout, lw, &v1alpha1.VirtualMachineRestore{}, func(obj runtime.Object) (bool, error) {
				r := obj.(*v1alpha1.VirtualMachineRestore)
				if r.UID != created.UID {
					return false, fmt.Errorf("restore %s was deleted", ref)
				}
				last = r
				p.phase(string(orPending(r.Status.Phase)))
				return r.Status.Phase == v1alpha1.SnapshotSucceeded || r.Status.Phase == v1alpha1.SnapshotFailed, nil
			})
			if err != nil {
				p.end("")
				return waitError(err, "restore "+ref, timeout, last != nil, func() string { return string(orPending(last.Status.Phase)) })
			}
			if last.Status.Phase == v1alpha1.SnapshotFailed {
				p.end("")
				return fmt.Errorf("restore %s failed: %s", ref, last.Status.Error)
			}
			detail := ""
			if c := meta.FindStatusCondition(last.Status.Conditions, v1alpha1.RestoreConditionComplete); c != nil && c.Message != "" {
				detail = ": " + c.Message
			}
			p.end(fmt.Sprintf(" in %.1fs%s", time.Since(start).Seconds(), detail))
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the restore is complete (or failed), printing its progress")
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "how long --wait waits")
	return cmd
}

func orPending(p v1alpha1.SnapshotPhase) v1alpha1.SnapshotPhase {
	if p == "" {
		return v1alpha1.SnapshotPending
	}
	return p
}

// byName lists and watches the one object named name through a typed
// client's List and Watch, for waitUntil.
func byName[L runtime.Object](name string, list func(context.Context, metav1.ListOptions) (L, error), watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) *cache.ListWatch {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return list(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return watchFn(ctx, opts)
		},
	}
}

// waitUntil watches one object (lw selects it by name) until cond says done.
func waitUntil(ctx context.Context, timeout time.Duration, lw cache.ListerWatcher, obj runtime.Object, cond func(runtime.Object) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := watchtools.UntilWithSync(ctx, lw, obj, nil, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Deleted:
			return false, errGone
		case watch.Added, watch.Modified:
			return cond(ev.Object)
		}
		return false, nil
	})
	return err
}

var errGone = errors.New("it was deleted while waiting")

func waitError(err error, what string, timeout time.Duration, seen bool, phase func() string) error {
	switch {
	case errors.Is(err, errGone):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, watchtools.ErrWatchClosed), errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "timed out"):
		if seen {
			return fmt.Errorf("timed out after %s waiting for %s (phase %s)", timeout, what, phase())
		}
		return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
	}
	return fmt.Errorf("waiting for %s: %w", what, err)
}

// progress prints phases on one line as they come:
// "snapshot team-a/demo-1: Pending... InProgress... Succeeded (memory, 80.4Mi) in 0.4s".
type progress struct {
	out    io.Writer
	prefix string
	last   string
}

func (p *progress) phase(phase string) {
	if phase == p.last {
		return
	}
	if p.last == "" {
		fmt.Fprint(p.out, p.prefix)
	} else {
		fmt.Fprint(p.out, "... ")
	}
	fmt.Fprint(p.out, phase)
	p.last = phase
}

func (p *progress) end(suffix string) {
	if p.last == "" {
		return
	}
	fmt.Fprintln(p.out, suffix)
}

func describeSnapshot(s *v1alpha1.VirtualMachineSnapshot) string {
	what := "disks only"
	if s.Status.MemoryIncluded {
		what = "memory"
	}
	if s.Status.Size != nil {
		what += ", " + humanBytes(s.Status.Size.Value())
	}
	return what
}

// humanBytes prints a size the way kubectl get prints it: 80.4Mi.
func humanBytes(n int64) string {
	v := float64(n)
	units := []string{"", "Ki", "Mi", "Gi", "Ti"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}

// explainCreate is explain for creating a snapshot or restore: an invalid
// request names the field and the reason (no such snapshot, not ready,
// of another VM, ...), not the object's generated name.
func explainCreate(err error, action string, t *target) error {
	status, ok := statusOf(err)
	if !ok || status.Status().Code != http.StatusUnprocessableEntity || status.Status().Details == nil || len(status.Status().Details.Causes) == 0 {
		return explain(err, action, t)
	}
	var why []string
	for _, c := range status.Status().Details.Causes {
		msg := c.Message
		if c.Field != "" && !strings.HasPrefix(msg, c.Field) {
			msg = c.Field + ": " + msg
		}
		why = append(why, msg)
	}
	return fmt.Errorf("cannot %s VM %s: %s", action, t.Ref(), strings.Join(why, "; "))
}
