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

// Package app is the vessel-apiserver command: its options and how they
// become a running server.
package app

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericoptions "k8s.io/apiserver/pkg/server/options"

	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/apiserver"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	"github.com/vessel-vm/vessel/controller/agentcert"
	"github.com/vessel-vm/vessel/controller/usage"
)

// Options are the vessel-apiserver's command-line options: the generic
// server's recommended options plus embedded etcd and host path policy.
type Options struct {
	RecommendedOptions *genericoptions.RecommendedOptions

	// EtcdDataDir is the embedded etcd's data directory, used when no
	// --etcd-servers are given.
	EtcdDataDir string
	// EtcdListen is the embedded etcd's client URL.
	EtcdListen string
	// AllowedHostPathRoots are the shared hostPath roots, read-only to VMs.
	AllowedHostPathRoots []string
	// WritableHostPathRoots are hostPath roots divided per namespace.
	WritableHostPathRoots []string
	// AllowedBridges are the host bridges VM interfaces may connect to.
	AllowedBridges []string
	// AgentServiceAccounts are the node agents' service accounts
	// ("<namespace>:<name>"), besides system:vessel-agents certificates.
	AgentServiceAccounts []string
	// AgentClient reaches node agents' stream servers for console and log.
	AgentClient apiserver.AgentClientOptions
	// UsageResolution is how often agents are read for the VMs' usage
	// (metrics.vessel.dev, kubectl vm top).
	UsageResolution time.Duration
	// AgentSigner* make the server approve and sign agents' serving
	// certificate requests (signer vessel.dev/agent-serving) with the agent
	// CA; without the files those CSRs are left alone.
	AgentSignerCertFile string
	AgentSignerKeyFile  string
	AgentSignerDuration time.Duration
	// ControllersElection times the Lease that picks the replica running
	// the controllers.
	ControllersElection apiserver.ElectionTimes
	// RunControllers runs the controllers (under the Lease); false serves
	// the API only.
	RunControllers bool
}

// NewOptions returns options with Vessel's defaults.
func NewOptions() *Options {
	return &Options{
		RecommendedOptions:   apiserver.NewRecommendedOptions(),
		EtcdDataDir:          "/var/lib/vessel/etcd",
		EtcdListen:           "http://127.0.0.1:0",
		AllowedHostPathRoots: apiserver.DefaultAllowedHostPathRoots(),
		AgentServiceAccounts: []string{agentidentity.DefaultServiceAccount},
		UsageResolution:      usage.DefaultResolution,
		AgentSignerDuration:  agentcert.DefaultDuration,
		ControllersElection:  apiserver.DefaultControllersElection,
		RunControllers:       true,
	}
}

// AddFlags registers every option on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.RecommendedOptions.AddFlags(fs)
	fs.StringVar(&o.EtcdDataDir, "etcd-data-dir", o.EtcdDataDir,
		"Data directory of the embedded etcd, started when --etcd-servers is empty.")
	fs.StringVar(&o.EtcdListen, "embedded-etcd-listen", o.EtcdListen,
		"Client URL of the embedded etcd (port 0 picks a free port).")
	fs.StringSliceVar(&o.AllowedHostPathRoots, "allowed-host-path-roots", o.AllowedHostPathRoots,
		"Shared directories under which hostPath sources may lie: VMs may read files there (kernels, initrds, readOnly disks), never write them. Keep in line with the agents' flag.")
	fs.StringSliceVar(&o.WritableHostPathRoots, "writable-host-path-roots", o.WritableHostPathRoots,
		"Directories divided per namespace: a VM may use files under <root>/<its namespace>/, writable or not. Keep in line with the agents' flag.")
	fs.StringSliceVar(&o.AllowedBridges, "allowed-bridges", o.AllowedBridges,
		"Host bridges VM interfaces of type Bridge may connect to (default: none). Keep in line with the agents' flag, which each agent enforces on its host.")
	fs.StringSliceVar(&o.AgentServiceAccounts, "agent-service-accounts", o.AgentServiceAccounts,
		"Service accounts (<namespace>:<name>) node agents run as: a token of one bound to a pod on node N is the agent of Hypervisor N. Client certificates of users system:vessel-agent:<hypervisor> in group system:vessel-agents are agents too.")
	fs.StringVar(&o.AgentClient.CAFile, "agent-ca-file", o.AgentClient.CAFile,
		"CA bundle that verifies node agents' stream server certificates (console, log). Without the three --agent-* files, console and log answer 503.")
	fs.StringVar(&o.AgentClient.CertFile, "agent-client-cert-file", o.AgentClient.CertFile,
		"Client certificate presented to node agents' stream servers (its CN must be one the agents allow, vessel-apiserver by default).")
	fs.StringVar(&o.AgentClient.KeyFile, "agent-client-key-file", o.AgentClient.KeyFile,
		"Private key of --agent-client-cert-file.")
	fs.StringVar(&o.AgentSignerCertFile, "agent-serving-signer-cert-file", o.AgentSignerCertFile,
		"Agent CA certificate (the one --agent-ca-file trusts) with which the server approves and signs node agents' serving certificate requests (CSR signer "+agentcert.SignerName+"): an agent of hypervisor X gets CN system:vessel-agent:X, DNS name X and its IP addresses, nothing else. Needs kube-apiserver (--authentication-kubeconfig).")
	fs.StringVar(&o.AgentSignerKeyFile, "agent-serving-signer-key-file", o.AgentSignerKeyFile,
		"Private key of --agent-serving-signer-cert-file.")
	fs.DurationVar(&o.AgentSignerDuration, "agent-serving-cert-duration", o.AgentSignerDuration,
		"Longest lifetime of an agent serving certificate the server signs (a CSR may ask for less); agents rotate theirs before it ends.")
	fs.BoolVar(&o.RunControllers, "run-controllers", o.RunControllers,
		"Run the controllers (scheduler, heartbeat monitor, snapshots, clones, pools, quota, agent certificates) when holding their Lease; false serves the API only, and another replica runs them.")
	fs.DurationVar(&o.ControllersElection.LeaseDuration, "controllers-lease-duration", o.ControllersElection.LeaseDuration,
		"With several replicas, one at a time runs the controllers (scheduler, heartbeat monitor ...) while it holds the Lease vessel-system/vessel-controllers in kube-apiserver: how long the others wait after its last renewal before they take it over.")
	fs.DurationVar(&o.ControllersElection.RenewDeadline, "controllers-renew-deadline", o.ControllersElection.RenewDeadline,
		"How long the holder of the controllers' Lease keeps trying to renew it before it stops its controllers; less than --controllers-lease-duration.")
	fs.DurationVar(&o.ControllersElection.RetryPeriod, "controllers-retry-period", o.ControllersElection.RetryPeriod,
		"How often the controllers' Lease is renewed by its holder and tried by the other replicas.")
	fs.DurationVar(&o.UsageResolution, "usage-resolution", o.UsageResolution,
		"How often the node agents are read (over the --agent-* mutual TLS) for the VMs' CPU and memory that metrics.vessel.dev serves; CPU is averaged over two reads.")
}

// embeddedEtcd is true when no external etcd is configured.
func (o *Options) embeddedEtcd() bool {
	return len(o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList) == 0
}

// Complete fills in derived values and registers Vessel's admission plugins.
func (o *Options) Complete() error {
	for _, roots := range [][]string{o.AllowedHostPathRoots, o.WritableHostPathRoots} {
		for i, root := range roots {
			roots[i] = filepath.Clean(root)
		}
	}
	if admission := o.RecommendedOptions.Admission; admission != nil {
		apiserver.RegisterAdmissionPlugins(admission)
	}
	return nil
}

// Validate checks the options; with embedded etcd, --etcd-servers may be empty.
func (o *Options) Validate() error {
	recommended := *o.RecommendedOptions
	if o.embeddedEtcd() {
		etcd := *recommended.Etcd
		etcd.StorageConfig.Transport.ServerList = []string{o.EtcdListen}
		recommended.Etcd = &etcd
	}
	errs := recommended.Validate()
	errs = append(errs, validation.ValidateHostPathRoots(o.AllowedHostPathRoots, o.WritableHostPathRoots)...)
	errs = append(errs, validateAgentClient(o.AgentClient)...)
	if (o.AgentSignerCertFile == "") != (o.AgentSignerKeyFile == "") {
		errs = append(errs, fmt.Errorf("--agent-serving-signer-cert-file and --agent-serving-signer-key-file go together"))
	}
	if o.AgentSignerDuration < time.Hour {
		errs = append(errs, fmt.Errorf("--agent-serving-cert-duration must be at least 1h, got %v", o.AgentSignerDuration))
	}
	errs = append(errs, agentidentity.ValidateServiceAccounts(o.AgentServiceAccounts)...)
	if err := o.ControllersElection.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.UsageResolution < time.Second {
		errs = append(errs, fmt.Errorf("--usage-resolution must be at least 1s, got %v", o.UsageResolution))
	}
	if o.embeddedEtcd() && o.EtcdDataDir == "" {
		errs = append(errs, fmt.Errorf("--etcd-data-dir is required when --etcd-servers is empty"))
	}
	return utilerrors.NewAggregate(errs)
}

// validateAgentClient accepts none or all of the --agent-* files.
func validateAgentClient(o apiserver.AgentClientOptions) []error {
	if o == (apiserver.AgentClientOptions{}) {
		return nil
	}
	var errs []error
	for flag, v := range map[string]string{"--agent-ca-file": o.CAFile, "--agent-client-cert-file": o.CertFile, "--agent-client-key-file": o.KeyFile} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required when any --agent-* file is set", flag))
		}
	}
	return errs
}

// Config builds the server configuration. It does not start etcd: with
// embedded etcd, Run starts it and points the options at it first.
func (o *Options) Config() (*apiserver.Config, error) {
	agentTransports, err := o.AgentClient.Transports()
	if err != nil {
		return nil, err
	}
	var signer *agentcert.Signer
	if o.AgentSignerCertFile != "" {
		if signer, err = agentcert.NewSigner(o.AgentSignerCertFile, o.AgentSignerKeyFile, o.AgentSignerDuration); err != nil {
			return nil, err
		}
	}
	return apiserver.NewConfig(o.RecommendedOptions, apiserver.ExtraConfig{
		Validation: validation.Options{
			AllowedHostPathRoots:  o.AllowedHostPathRoots,
			WritableHostPathRoots: o.WritableHostPathRoots,
			AllowedBridges:        o.AllowedBridges,
		},
		AgentTransports:     agentTransports,
		AgentSigner:         signer,
		AgentIdentity:       agentidentity.Identifier{ServiceAccounts: o.AgentServiceAccounts},
		UsageResolution:     o.UsageResolution,
		ControllersElection: o.ControllersElection,
		DisableControllers:  !o.RunControllers,
	})
}
