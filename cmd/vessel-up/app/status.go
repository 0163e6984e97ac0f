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
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/vessel-vm/vessel/launcher"
)

// WriteStatus prints st as `vessel-up --status` shows it: the supervisor,
// then one row per component.
func WriteStatus(w io.Writer, st *launcher.Status) error {
	return writeStatus(w, st, time.Now())
}

func writeStatus(w io.Writer, st *launcher.Status, now time.Time) error {
	if st.Supervisor.Running {
		fmt.Fprintf(w, "supervisor: running, pid %d, started %s; log %s\n",
			st.Supervisor.PID, ago(now, st.Supervisor.StartedAt), st.Supervisor.LogFile)
	} else {
		fmt.Fprintf(w, "supervisor: not running (vessel-up starts it); log %s\n", st.Supervisor.LogFile)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tSTATE\tPID\tSINCE\tRESTARTS\tLAST EXIT\tDETAIL")
	for _, c := range st.Components {
		pid, since := "-", "-"
		if c.PID != 0 {
			pid = fmt.Sprint(c.PID)
			if c.StartedAt != nil {
				since = ago(now, *c.StartedAt)
			}
		}
		lastExit := "-"
		if c.LastExit != nil {
			lastExit = fmt.Sprintf("%s, %s", c.LastExit.Reason, ago(now, c.LastExit.At))
		}
		detail := c.Message
		if c.State == launcher.StateBackoff && c.NextStart != nil && detail == "" {
			detail = "starts again in " + c.NextStart.Sub(now).Round(time.Second).String()
		}
		if c.Adopted && detail == "" {
			detail = "adopted from an earlier supervisor"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.Name, c.State, pid, since, c.Restarts, lastExit, detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "logs: %s/logs/<component>.log\n", st.StateDir)
	return err
}

// WriteHypervisors prints the hypervisors as `vessel-up --status` shows
// them: where each one's libvirtd is, and how to look inside.
func WriteHypervisors(w io.Writer, hvs []launcher.Hypervisor) error {
	if len(hvs) == 0 {
		_, err := fmt.Fprintln(w, "hypervisors: none")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "HYPERVISOR\tNETNS\tFABRIC ADDRESS\tLIBVIRT")
	for _, hv := range hvs {
		fmt.Fprintf(tw, "%s\t%s\t%s\tvirsh -c '%s'\n", hv.Name, hv.Netns, hv.Address.Addr(), hv.URI())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "QEMU logs: %s/log/qemu/<domain>.log; inside a hypervisor: ip netns exec <netns> ...\n", filepath.Join(filepath.Dir(hvs[0].Dir), "<hypervisor>"))
	return err
}

// ago says how long before now t was, to the second.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}
