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
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func parse(t *testing.T, args ...string) *Options {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("vessel-up", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestCompleteDefaults(t *testing.T) {
	o := parse(t)
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	// The tests run inside the repository: its .vessel is the default.
	if filepath.Base(o.StateDir) != ".vessel" {
		t.Errorf("StateDir = %q, want .vessel at the repository root", o.StateDir)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(o.StateDir), "go.mod")); err != nil {
		t.Errorf("StateDir %q is not at the repository root: %v", o.StateDir, err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if o.HypervisorPrefix != strings.ToLower(host) {
		t.Errorf("HypervisorPrefix = %q, want the host name %q", o.HypervisorPrefix, strings.ToLower(host))
	}
	want := []string{strings.ToLower(host) + "-1", strings.ToLower(host) + "-2"}
	if cfg := o.Config(log.New(io.Discard, "", 0)); cfg.StateDir != o.StateDir || !slices.Equal(cfg.Hypervisors, want) || cfg.NoAgent {
		t.Errorf("Config() = %+v, want the state directory and hypervisors %v", cfg, want)
	}
}

// --hypervisors sets how many; 0 is the control plane alone.
func TestHypervisorCount(t *testing.T) {
	o := parse(t, "--hypervisors=3", "--hypervisor-prefix=node")
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	cfg := o.Config(log.New(io.Discard, "", 0))
	if want := []string{"node-1", "node-2", "node-3"}; !slices.Equal(cfg.Hypervisors, want) || cfg.NoAgent {
		t.Errorf("hypervisors %v (no agent: %v), want %v", cfg.Hypervisors, cfg.NoAgent, want)
	}
	o = parse(t, "--hypervisors=0")
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if cfg := o.Config(log.New(io.Discard, "", 0)); len(cfg.Hypervisors) != 0 || !cfg.NoAgent {
		t.Errorf("--hypervisors=0: hypervisors %v, no agent %v", cfg.Hypervisors, cfg.NoAgent)
	}
}

func TestFlagsOverrideDefaults(t *testing.T) {
	o := parse(t, "--state-dir=/tmp/somewhere", "--hypervisor-prefix=hv-7")
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if o.StateDir != "/tmp/somewhere" || o.HypervisorPrefix != "hv-7" {
		t.Errorf("after Complete: StateDir=%q HypervisorPrefix=%q", o.StateDir, o.HypervisorPrefix)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // empty: valid
	}{
		{"host-like prefix", []string{"--hypervisor-prefix=node.example"}, ""},
		{"upper case", []string{"--hypervisor-prefix=Node_1"}, "--hypervisor-prefix"},
		{"negative count", []string{"--hypervisors=-1"}, "--hypervisors"},
		{"too many", []string{"--hypervisors=201"}, "--hypervisors"},
		{"down needs no name", []string{"--down", "--state-dir=/tmp/x"}, ""},
		{"status needs no name", []string{"--status", "--state-dir=/tmp/x"}, ""},
		{"destroy needs no name", []string{"--destroy", "--state-dir=/tmp/x"}, ""},
		{"down or status", []string{"--down", "--status"}, "exclude each other"},
		{"down or destroy", []string{"--down", "--destroy"}, "exclude each other"},
		{"no timeout", []string{"--timeout=0s"}, "--timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := parse(t, tt.args...)
			if err := o.Complete(); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate: err = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// --bin-dir takes every component's binary from one directory: the e2e
// suite runs the binaries it built from the tree.
func TestBinDir(t *testing.T) {
	o := parse(t, "--bin-dir=/opt/vessel/bin", "--hypervisor-prefix=hv")
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	cfg := o.Config(log.New(io.Discard, "", 0))
	for _, bin := range []string{cfg.EtcdBinary, cfg.KubeAPIServerBinary, cfg.KubeControllerManagerBinary, cfg.VesselAPIServerBinary, cfg.AgentBinary} {
		if filepath.Dir(bin) != "/opt/vessel/bin" {
			t.Errorf("binary %s is not from --bin-dir", bin)
		}
	}
	if o := parse(t, "--hypervisor-prefix=hv"); o.Complete() == nil && o.Config(log.New(io.Discard, "", 0)).EtcdBinary != "" {
		t.Error("without --bin-dir the binaries should be left to the launcher's default")
	}
}
