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

	"github.com/spf13/cobra"
)

func newLogsCommand(o *Options) *cobra.Command {
	var tail int64
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a VM's recent console output",
		Long: `Print the recent output of a VM's serial console, as kept by the node
agent that runs it (also after the VM stopped: the log often says why).`,
		Args: exactlyOneVM,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return fmt.Errorf("--tail must not be negative")
			}
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			req := t.Client.VesselV1alpha1().RESTClient().Get().
				Namespace(t.Namespace).Resource("virtualmachines").Name(t.Name).SubResource("log")
			if tail > 0 {
				req = req.Param("tailBytes", fmt.Sprint(tail))
			}
			body, err := req.Stream(cmd.Context())
			if err != nil {
				return explain(err, "read the console log of", t)
			}
			defer body.Close()
			_, err = io.Copy(o.Out, body)
			return err
		},
	}
	cmd.Flags().Int64Var(&tail, "tail", 0, "print only the last N bytes (0: all the agent keeps)")
	return cmd
}
