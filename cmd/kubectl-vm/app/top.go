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
	"net/http"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	metricsv1alpha1 "github.com/vessel-vm/vessel/apis/metrics/v1alpha1"
)

func newTopCommand(o *Options) *cobra.Command {
	var allNamespaces, noHeaders bool
	var sortBy, selector string
	cmd := &cobra.Command{
		Use:   "top [NAME] [-n NAMESPACE | -A] [--sort-by cpu|memory]",
		Short: "Show the CPU and memory VMs use",
		Long: `Show the host CPU (cores) and memory (resident bytes) running VMs use,
as kubectl top pod does for pods. The vessel-apiserver reads the node agents
every 15 seconds; a VM shows up once it has been read twice. Reading it
needs get/list on virtualmachines.metrics.vessel.dev, which the view role has.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("top takes at most one VM name, got %d arguments\nUsage: %s", len(args), cmd.UseLine())
			}
			if len(args) == 1 && allNamespaces {
				return fmt.Errorf("a VM name cannot be used with --all-namespaces")
			}
			if sortBy != "" && sortBy != "cpu" && sortBy != "memory" {
				return fmt.Errorf("--sort-by must be cpu or memory, got %q", sortBy)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			t, err := o.target(name)
			if err != nil {
				return err
			}
			ns := t.Namespace
			if allNamespaces {
				ns = metav1.NamespaceAll
			}
			client := t.Client.MetricsV1alpha1().VirtualMachineMetricses(ns)
			var items []metricsv1alpha1.VirtualMachineMetrics
			if name != "" {
				m, err := client.Get(cmd.Context(), name, metav1.GetOptions{})
				if err != nil {
					if status, ok := statusOf(err); ok && status.Status().Code == http.StatusNotFound {
						return fmt.Errorf("no usage of VM %s: it does not exist, is not running, or was not measured twice yet (allow about 30 s after it starts)", t.Ref())
					}
					return explain(err, "read the usage of", t)
				}
				items = append(items, *m)
			} else {
				list, err := client.List(cmd.Context(), metav1.ListOptions{LabelSelector: selector})
				if err != nil {
					return explainList(err, ns)
				}
				items = list.Items
				if len(items) == 0 {
					if allNamespaces {
						fmt.Fprintln(o.ErrOut, "No VM usage found.")
					} else {
						fmt.Fprintf(o.ErrOut, "No VM usage found in %s namespace.\n", ns)
					}
					return nil
				}
			}
			return printUsage(o.Out, items, allNamespaces, sortBy, !noHeaders)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "show the VMs of every namespace")
	cmd.Flags().StringVar(&sortBy, "sort-by", "", "sort by cpu or memory, the largest first (default: by namespace and name)")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "only the VMs with these labels (label selector)")
	cmd.Flags().BoolVar(&noHeaders, "no-headers", false, "do not print the header line")
	return cmd
}

// explainList says why the usage of a namespace (all when ns is empty)
// could not be listed.
func explainList(err error, ns string) error {
	where := "namespace " + ns
	if ns == "" {
		where = "all namespaces"
	}
	if status, ok := statusOf(err); ok {
		switch status.Status().Code {
		case http.StatusForbidden:
			return fmt.Errorf("you are not allowed to read VM usage in %s: %s", where, status.Status().Message)
		case http.StatusUnauthorized:
			return fmt.Errorf("you are not logged in to the cluster (%s)", status.Status().Message)
		case http.StatusNotFound:
			return fmt.Errorf("the cluster does not serve VM usage (metrics.vessel.dev/v1alpha1): %s", status.Status().Message)
		}
	}
	return fmt.Errorf("list VM usage in %s: %w", where, err)
}

// printUsage prints what kubectl top pod prints: CPU in millicores and
// memory in MiB.
func printUsage(w io.Writer, items []metricsv1alpha1.VirtualMachineMetrics, namespaces bool, sortBy string, headers bool) error {
	items = append([]metricsv1alpha1.VirtualMachineMetrics(nil), items...)
	sort.SliceStable(items, func(i, j int) bool {
		a, b := &items[i], &items[j]
		switch sortBy {
		case "cpu":
			if c := cpu(a).Cmp(*cpu(b)); c != 0 {
				return c > 0
			}
		case "memory":
			if c := memory(a).Cmp(*memory(b)); c != 0 {
				return c > 0
			}
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	if headers {
		if namespaces {
			fmt.Fprint(tw, "NAMESPACE\t")
		}
		fmt.Fprintln(tw, "NAME\tCPU(cores)\tMEMORY(bytes)")
	}
	for i := range items {
		m := &items[i]
		if namespaces {
			fmt.Fprintf(tw, "%s\t", m.Namespace)
		}
		c, mem := cpu(m), memory(m)
		fmt.Fprintf(tw, "%s\t%dm\t%dMi\n", m.Name, c.MilliValue(), mem.Value()/(1024*1024))
	}
	return tw.Flush()
}

func cpu(m *metricsv1alpha1.VirtualMachineMetrics) *resource.Quantity {
	q := m.Usage[corev1.ResourceCPU]
	return &q
}

func memory(m *metricsv1alpha1.VirtualMachineMetrics) *resource.Quantity {
	q := m.Usage[corev1.ResourceMemory]
	return &q
}
