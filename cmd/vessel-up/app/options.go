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
	// Down stops what an earlier vessel-up started from StateDir; guests
	// keep running.
	Down bool
	// Destroy stops everything and removes the hypervisors: their guests
	// are killed and their namespaces deleted.
	Destroy bool
	// Status prints the supervisor's and each component's state.
	Status bool
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// vessel-apiserver and vessel-agent. Empty: _output/bin at the
	// repository root (the launcher's default).
	BinDir string
	// Timeout bounds the wait until every component is ready.
	Timeout time.Duration
	// Hypervisors is how many hypervisors run, each an agent with a
	// libvirtd of its own; 0 runs the control plane alone.
	Hypervisors int
	// HypervisorPrefix names the hypervisors <prefix>-1 ... <prefix>-N.
	// Complete defaults it to the host name, as vessel-agent does for its
	// one hypervisor.
	HypervisorPrefix string
	// FromImages runs the vessel-apiserver from the image `make images`
	// built (its OCI layout under _output/images), as a cluster would.
	FromImages bool
	// APIServers is how many vessel-apiservers run; EtcdMembers how many
	// members their etcd cluster has (0: the one apiserver's embedded
	// etcd).
	APIServers  int
	EtcdMembers int
	// vesselAPIServerImage is that layout, set by Complete.
	vesselAPIServerImage string
}

// DefaultHypervisors is how many hypervisors `make up` runs: two, so that
// what needs more than one (spreading VMs, migration) works locally.
const DefaultHypervisors = 2

// maxHypervisors is as many as the launcher has fabric addresses for.
const maxHypervisors = 200

// NewOptions returns the options before flags are parsed.
func NewOptions() *Options {
	return &Options{Timeout: 10 * time.Minute, Hypervisors: DefaultHypervisors, APIServers: 1}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "state directory (default: .vessel at the repository root)")
	fs.BoolVar(&o.Down, "down", o.Down, "stop everything a previous run started: the supervisor first, then the components (guests keep running; the next start adopts them)")
	fs.BoolVar(&o.Destroy, "destroy", o.Destroy, "stop everything, then remove the hypervisors: kill their guests and delete their network namespaces (files stay in the state directory)")
	fs.BoolVar(&o.Status, "status", o.Status, "show the supervisor and each component: state, pid, restarts, last exit (exits 1 unless all run)")
	fs.StringVar(&o.BinDir, "bin-dir", o.BinDir, "directory with etcd, kube-apiserver, kube-controller-manager, vessel-apiserver and vessel-agent (default: _output/bin at the repository root)")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "how long to wait until every component is ready")
	fs.IntVar(&o.Hypervisors, "hypervisors", o.Hypervisors, "how many hypervisors to run, each an agent with a libvirtd of its own in its own namespaces (0: the control plane alone)")
	fs.StringVar(&o.HypervisorPrefix, "hypervisor-prefix", o.HypervisorPrefix, "the hypervisors are named <prefix>-1 ... <prefix>-N (default: the host name)")
	fs.IntVar(&o.APIServers, "apiservers", o.APIServers, "how many vessel-apiservers to run, each on a port of its own behind the one APIService; one at a time runs the controllers (more than one needs --etcd-members)")
	fs.IntVar(&o.EtcdMembers, "etcd-members", o.EtcdMembers, "how many members the vessel-apiservers' etcd cluster has, each an etcd process with client and peer TLS (0: the vessel-apiserver's embedded etcd)")
	fs.BoolVar(&o.FromImages, "from-images", o.FromImages, "run the vessel-apiserver from its image's root filesystem (make images), not from _output/bin")
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
	if o.FromImages {
		root, err := launcher.RepoRoot()
		if err != nil {
			return err
		}
		o.vesselAPIServerImage = filepath.Join(root, "_output", "images", "vessel-apiserver")
	}
	if o.HypervisorPrefix == "" && o.starts() {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("read the host name for --hypervisor-prefix: %w", err)
		}
		o.HypervisorPrefix = strings.ToLower(host)
	}
	return nil
}

// Validate checks the completed options.
func (o *Options) Validate() error {
	var errs []error
	if o.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if n := countTrue(o.Down, o.Destroy, o.Status); n > 1 {
		errs = append(errs, errors.New("--down, --destroy and --status exclude each other"))
	}
	if o.Timeout <= 0 {
		errs = append(errs, errors.New("--timeout must be positive"))
	}
	if o.starts() {
		if o.Hypervisors < 0 || o.Hypervisors > maxHypervisors {
			errs = append(errs, fmt.Errorf("--hypervisors must be between 0 and %d, got %d", maxHypervisors, o.Hypervisors))
		}
		if msgs := validation.IsDNS1123Subdomain(o.HypervisorPrefix + "-1"); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--hypervisor-prefix %q makes hypervisor names like %q: %s", o.HypervisorPrefix, o.HypervisorPrefix+"-1", strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}

// starts says the options bring the control plane up, rather than stop it
// or report on it.
func (o *Options) starts() bool { return !o.Down && !o.Destroy && !o.Status }

// hypervisorNames are the hypervisors' names: <prefix>-1 ... <prefix>-N.
func (o *Options) hypervisorNames() []string {
	names := make([]string, o.Hypervisors)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", o.HypervisorPrefix, i+1)
	}
	return names
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// Config is what the launcher starts, reporting progress to logger.
func (o *Options) Config(logger *log.Logger) launcher.Options {
	cfg := launcher.Options{
		StateDir:             o.StateDir,
		Hypervisors:          o.hypervisorNames(),
		NoAgent:              o.Hypervisors == 0,
		VesselAPIServerImage: o.vesselAPIServerImage,
		APIServers:           o.APIServers,
		EtcdMembers:          o.EtcdMembers,
		Logf:                 logger.Printf,
	}
	if o.BinDir != "" {
		cfg.EtcdBinary = filepath.Join(o.BinDir, "etcd")
		cfg.KubeAPIServerBinary = filepath.Join(o.BinDir, "kube-apiserver")
		cfg.KubeControllerManagerBinary = filepath.Join(o.BinDir, "kube-controller-manager")
		cfg.VesselAPIServerBinary = filepath.Join(o.BinDir, "vessel-apiserver")
		cfg.AgentBinary = filepath.Join(o.BinDir, "vessel-agent")
		cfg.ReaperBinary = filepath.Join(o.BinDir, "vessel-reaper")
	}
	return cfg
}
