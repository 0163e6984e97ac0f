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
	// HypervisorName names the agent's Hypervisor. Complete defaults it to
	// the host name, as vessel-agent does: this is the one machine's
	// hypervisor.
	HypervisorName string
	// FromImages runs the vessel-apiserver from the image `make images`
	// built (its OCI layout under _output/images), as a cluster would.
	FromImages bool
	// vesselAPIServerImage is that layout, set by Complete.
	vesselAPIServerImage string
}

// NewOptions returns the options before flags are parsed.
func NewOptions() *Options {
	return &Options{}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "state directory (default: .vessel at the repository root)")
	fs.BoolVar(&o.Down, "down", o.Down, "stop everything a previous run started")
	fs.StringVar(&o.HypervisorName, "hypervisor-name", o.HypervisorName, "the agent's Hypervisor name (default: the host name)")
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
	if o.FromImages {
		root, err := launcher.RepoRoot()
		if err != nil {
			return err
		}
		o.vesselAPIServerImage = filepath.Join(root, "_output", "images", "vessel-apiserver")
	}
	if o.HypervisorName == "" && !o.Down {
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
	if !o.Down {
		if msgs := validation.IsDNS1123Subdomain(o.HypervisorName); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--hypervisor-name %q: %s", o.HypervisorName, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}

// Config is what the launcher starts, reporting progress to logger.
func (o *Options) Config(logger *log.Logger) launcher.Options {
	return launcher.Options{
		StateDir:             o.StateDir,
		HypervisorName:       o.HypervisorName,
		VesselAPIServerImage: o.vesselAPIServerImage,
		Logf:                 logger.Printf,
	}
}
