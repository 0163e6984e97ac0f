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
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vessel-vm/vessel/launcher"
)

// Options are vessel-up's flags.
type Options struct {
	// StateDir holds the control plane's PKI, data, PID files and logs.
	// Complete defaults it to .vessel at the repository root.
	StateDir string
	// Down stops what an earlier vessel-up started from StateDir.
	Down bool
	// Status prints the supervisor's and each component's state.
	Status bool
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// vessel-apiserver and vessel-agent. Empty: _output/bin at the
	// repository root (the launcher's default).
	BinDir string
	// Timeout bounds the wait until every component is ready.
	Timeout time.Duration
	// HypervisorName names the agent's Hypervisor. Complete defaults it to
	// the host name, as vessel-agent does: this is the one machine's
	// hypervisor.
	HypervisorName string
}

// NewOptions returns the options before flags are parsed.
func NewOptions() *Options {
	return &Options{Timeout: 10 * time.Minute}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "state directory (default: .vessel at the repository root)")
	fs.BoolVar(&o.Down, "down", o.Down, "stop everything a previous run started: the supervisor first, then the components")
	fs.BoolVar(&o.Status, "status", o.Status, "show the supervisor and each component: state, pid, restarts, last exit (exits 1 unless all run)")
	fs.StringVar(&o.BinDir, "bin-dir", o.BinDir, "directory with etcd, kube-apiserver, kube-controller-manager, vessel-apiserver and vessel-agent (default: _output/bin at the repository root)")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "how long to wait until every component is ready")
	fs.StringVar(&o.HypervisorName, "hypervisor-name", o.HypervisorName, "the agent's Hypervisor name (default: the host name)")
}

// Complete fills in the defaults that depend on where vessel-up runs.
func (o *Options) Complete() error {
	if o.StateDir == "" {
		dir, err := launcher.DefaultStateDir()
		if err != nil {
			return err
		}
		o.StateDir = dir
	}
	if o.BinDir != "" {
		dir, err := filepath.Abs(o.BinDir)
		if err != nil {
			return fmt.Errorf("resolve --bin-dir: %w", err)
		}
		o.BinDir = dir
	}
	if o.HypervisorName == "" && o.starts() {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("read the host name for --hypervisor-name: %w", err)
		}
		o.HypervisorName = strings.ToLower(host)
	}
	return nil
}

// Validate checks the completed options.
func (o *Options) Validate() error {
	var errs []error
	if o.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if o.Down && o.Status {
		errs = append(errs, errors.New("--down and --status exclude each other"))
	}
	if o.Timeout <= 0 {
		errs = append(errs, errors.New("--timeout must be positive"))
	}
	if o.starts() {
		if msgs := validation.IsDNS1123Subdomain(o.HypervisorName); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--hypervisor-name %q: %s", o.HypervisorName, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}

// starts says the options bring the control plane up, rather than stop it
// or report on it.
func (o *Options) starts() bool { return !o.Down && !o.Status }

// Config is what the launcher starts, reporting progress to logger.
func (o *Options) Config(logger *log.Logger) launcher.Options {
	cfg := launcher.Options{
		StateDir:       o.StateDir,
		HypervisorName: o.HypervisorName,
		Logf:           logger.Printf,
	}
	if o.BinDir != "" {
		cfg.EtcdBinary = filepath.Join(o.BinDir, "etcd")
		cfg.KubeAPIServerBinary = filepath.Join(o.BinDir, "kube-apiserver")
		cfg.KubeControllerManagerBinary = filepath.Join(o.BinDir, "kube-controller-manager")
		cfg.VesselAPIServerBinary = filepath.Join(o.BinDir, "vessel-apiserver")
		cfg.AgentBinary = filepath.Join(o.BinDir, "vessel-agent")
	}
	return cfg
}
