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

// Package app is vessel-agent's command: options (flags, Complete,
// Validate) turn into a Config, and Run starts the node agent from it.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	vesselvalidation "github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/node-agent/agent"
	"github.com/vessel-vm/vessel/node-agent/console"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/metrics"
	"github.com/vessel-vm/vessel/node-agent/migrationproxy"
	"github.com/vessel-vm/vessel/node-agent/network"
	"github.com/vessel-vm/vessel/node-agent/servingcert"
)

// Version is the agent's version, set at link time.
var Version = "v0.0.0-dev"

// Options are vessel-agent's flags.
type Options struct {
	Kubeconfig string
	// KubeAPIQPS and KubeAPIBurst bound the agent's requests, as the
	// kubelet's flags of the same names do.
	KubeAPIQPS     float32
	KubeAPIBurst   int
	HypervisorName string
	NodeLabels     map[string]string
	StateDir       string
	// NetworkNamespace is where the managed guest network lives (name or
	// path; empty: the agent's own); ManagedNetworkPool is split into a
	// /24 per tenant namespace.
	NetworkNamespace   string
	ManagedNetworkPool string
	// AllowedBridges are the host bridges Bridge interfaces may join.
	AllowedBridges       []string
	LibvirtSocket        string
	AllowedHostPathRoots []string
	// WritableHostPathRoots are divided per namespace.
	WritableHostPathRoots []string
	// Image downloads: reachable non-public addresses, proxy, limits, and
	// the cache's size bound.
	ImageAllowedCIDRs    []string
	ImageProxy           string
	ImageMaxSize         string
	DiskMaxVirtualSize   string
	ImageDownloadTimeout time.Duration
	ImageCacheSize       string
	MaxVMs               int32
	ReservedCPUs         int32
	CPUAllocationRatio   int32
	ReservedMemory       string
	HeartbeatInterval    time.Duration
	ResyncPeriod         time.Duration
	Workers              int
	DaemonEndpoint       string
	// The console stream server: it listens on StreamAddress (Complete
	// defaults it to DaemonEndpoint) with the serving certificate StreamCertFile/KeyFile
	// and admits clients whose certificate StreamClientCAFile issued. It
	// runs when the certificate is set. With StreamCertDir instead, the
	// certificate comes from the CSR API (signer vessel.dev/agent-serving)
	// and is rotated; it is kept in that directory.
	StreamAddress      string
	StreamCertFile     string
	StreamKeyFile      string
	StreamCertDir      string
	StreamClientCAFile string
	// StreamCertWait is how long Config waits for the first certificate
	// from the CSR API.
	StreamCertWait time.Duration
	// Events is auto (when the API server also serves core Events, as
	// kube-apiserver does), true or false.
	Events         string
	KVM            string
	KVMProbeKernel string
	KVMProbeTime   time.Duration
	// Driver is the hypervisor driver: libvirt, or sim for scale tests
	// (see Simulation).
	Driver     string
	Simulation SimulationOptions
	// MigrationBindAddress is where incoming live migrations are accepted,
	// inside NetworkNamespace (the hypervisor's fabric address), with the
	// stream server's certificate; empty: this hypervisor is no migration
	// target. MigrationBandwidth caps outgoing migrations, MiB/s.
	MigrationBindAddress string
	MigrationBandwidth   uint64
	// Metrics is the Prometheus endpoint: address, serving certificate
	// (Complete defaults it to the stream server's) and delegated
	// authentication and authorization (Complete defaults their
	// kubeconfigs to Kubeconfig).
	Metrics metrics.ServerOptions
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	host, _ := os.Hostname()
	return &Options{
		Metrics:              metrics.NewServerOptions(),
		KubeAPIQPS:           DefaultKubeAPIQPS,
		KubeAPIBurst:         DefaultKubeAPIBurst,
		HypervisorName:       strings.ToLower(host),
		StateDir:             "/var/lib/vessel/agent",
		ManagedNetworkPool:   network.DefaultPool,
		LibvirtSocket:        hypervisor.DefaultSocket,
		AllowedHostPathRoots: []string{"/var/lib/vessel/images"},
		ImageMaxSize:         resource.NewQuantity(disks.DefaultMaxImageSize, resource.BinarySI).String(),
		DiskMaxVirtualSize:   resource.NewQuantity(disks.DefaultMaxVirtualSize, resource.BinarySI).String(),
		ImageDownloadTimeout: disks.DefaultDownloadTimeout,
		ImageCacheSize:       resource.NewQuantity(disks.DefaultMaxCacheSize, resource.BinarySI).String(),
		MaxVMs:               agent.DefaultMaxVMs,
		ReservedMemory:       "0",
		CPUAllocationRatio:   agent.DefaultCPUAllocationRatio,
		HeartbeatInterval:    agent.DefaultHeartbeatInterval,
		ResyncPeriod:         agent.DefaultResyncPeriod,
		Workers:              agent.DefaultWorkers,
		Events:               "auto",
		KVM:                  "auto",
		KVMProbeTime:         8 * time.Second,
		StreamCertWait:       5 * time.Minute,
		Driver:               DriverLibvirt,
		Simulation:           NewSimulationOptions(),
	}
}

// AddFlags registers the options on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig reaching the vessel.dev API (through kube-apiserver, or vessel-apiserver directly); empty: in-cluster config")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "requests per second the agent sends the API server at most (heartbeats, VM status, events), as the kubelet's flag")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "requests the agent may send at once above --kube-api-qps")
	fs.StringVar(&o.HypervisorName, "hypervisor-name", o.HypervisorName, "name of this node's Hypervisor object (default: the host name)")
	fs.StringToStringVar(&o.NodeLabels, "node-labels", o.NodeLabels, "labels put on the Hypervisor, matched by VM nodeSelectors (key=value,...)")
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "directory for the image cache (images/) and per-VM files (vms/<uid>/)")
	fs.StringVar(&o.NetworkNamespace, "network-namespace", o.NetworkNamespace, "network namespace (a name under /run/netns, or a path) of the managed guest network: its bridges, DHCP servers and nftables rules; libvirtd must run in it too (default: the agent's own)")
	fs.StringVar(&o.ManagedNetworkPool, "managed-network-pool", o.ManagedNetworkPool, "IPv4 prefix (/16 to /24) the managed network gives each tenant namespace a /24 of")
	fs.StringVar(&o.LibvirtSocket, "libvirt-socket", o.LibvirtSocket, "libvirtd's read-write UNIX socket")
	fs.StringSliceVar(&o.AllowedBridges, "allowed-bridges", o.AllowedBridges, "host bridges (in --network-namespace) VM interfaces of type Bridge may join, each guest held to its own MAC there; none by default. The vessel-apiserver's --allowed-bridges is the cluster-wide list, this one the node's")
	fs.StringSliceVar(&o.AllowedHostPathRoots, "allowed-host-path-roots", o.AllowedHostPathRoots, "shared directories hostPath sources may resolve into (symlinks are followed, escapes refused): VMs may read files there (kernels, initrds, readOnly disks), never write them")
	fs.StringSliceVar(&o.WritableHostPathRoots, "writable-host-path-roots", o.WritableHostPathRoots, "directories divided per namespace: a VM may use files under <root>/<its namespace>/, writable or not (default: none)")
	fs.StringSliceVar(&o.ImageAllowedCIDRs, "image-allowed-cidrs", o.ImageAllowedCIDRs, "loopback, link-local, private or other non-public networks image URLs may reach anyway (an operator's own image server), e.g. 10.0.5.0/24")
	fs.StringVar(&o.ImageProxy, "image-proxy", o.ImageProxy, "HTTP proxy for image downloads, which then decides which hosts are reachable by name (HTTP_PROXY and friends are ignored)")
	fs.StringVar(&o.ImageMaxSize, "image-max-size", o.ImageMaxSize, "largest image a download may bring, e.g. 20Gi")
	fs.StringVar(&o.DiskMaxVirtualSize, "disk-max-virtual-size", o.DiskMaxVirtualSize, "largest disk a qcow2 image or hostPath file may make (its virtual size, which a few KiB of qcow2 can set to exabytes for the guest to fill), e.g. 256Gi")
	fs.DurationVar(&o.ImageDownloadTimeout, "image-download-timeout", o.ImageDownloadTimeout, "longest an image download may take")
	fs.StringVar(&o.ImageCacheSize, "image-cache-size", o.ImageCacheSize, "size the image cache is kept to, least recently used images removed first (images VMs on this node use are kept)")
	fs.Int32Var(&o.MaxVMs, "max-vms", o.MaxVMs, "number of VMs this node accepts")
	fs.Int32Var(&o.ReservedCPUs, "reserved-cpus", o.ReservedCPUs, "CPUs kept back from VMs")
	fs.Int32Var(&o.CPUAllocationRatio, "cpu-allocation-ratio", o.CPUAllocationRatio, "vCPUs each unreserved host CPU may back (CPU overcommit)")
	fs.StringVar(&o.ReservedMemory, "reserved-memory", o.ReservedMemory, "memory kept back from VMs, for example 1Gi")
	fs.DurationVar(&o.HeartbeatInterval, "heartbeat-interval", o.HeartbeatInterval, "how often the Hypervisor status is refreshed")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", o.ResyncPeriod, "how often every VM is re-checked against libvirt")
	fs.IntVar(&o.Workers, "workers", o.Workers, "VMs reconciled in parallel")
	fs.StringVar(&o.DaemonEndpoint, "daemon-endpoint", o.DaemonEndpoint, "host:port of this agent's stream server, published for consoles")
	fs.StringVar(&o.StreamAddress, "stream-address", o.StreamAddress, "address the console stream server listens on (default: --daemon-endpoint)")
	fs.StringVar(&o.StreamCertFile, "stream-cert-file", o.StreamCertFile, "serving certificate of the console stream server; without it no console is served")
	fs.StringVar(&o.StreamKeyFile, "stream-key-file", o.StreamKeyFile, "private key of --stream-cert-file")
	fs.StringVar(&o.StreamCertDir, "stream-cert-dir", o.StreamCertDir, "directory where the stream server's certificate and key are kept when they come from the Kubernetes CSR API instead of --stream-cert-file: the agent requests one for its hypervisor's name and --daemon-endpoint's IP (signer "+servingcert.SignerName+", which the vessel-apiserver approves and signs) and rotates it before it expires")
	fs.DurationVar(&o.StreamCertWait, "stream-cert-wait", o.StreamCertWait, "how long to wait at start for the first certificate from the CSR API (--stream-cert-dir)")
	fs.StringVar(&o.MigrationBindAddress, "migration-bind-address", o.MigrationBindAddress, "IP:port inside --network-namespace (the hypervisor's fabric address) where other hypervisors' agents send live migrations, over mutual TLS with the stream server's certificate; their certificates must come from --stream-client-ca-file's CA. Empty: no incoming migrations")
	fs.Uint64Var(&o.MigrationBandwidth, "migration-bandwidth", o.MigrationBandwidth, "cap of each outgoing live migration's memory stream, MiB/s (0: none)")
	fs.StringVar(&o.StreamClientCAFile, "stream-client-ca-file", o.StreamClientCAFile, "CA that issues the vessel-apiserver's client certificate; clients without one are refused")
	fs.StringVar(&o.Events, "events", o.Events, "record Kubernetes Events: auto (when the server serves core/v1 events), true or false")
	fs.StringVar(&o.KVM, "kvm", o.KVM, "hardware acceleration: auto (probe with a real boot), true, or false (TCG)")
	fs.StringVar(&o.KVMProbeKernel, "kvm-probe-kernel", o.KVMProbeKernel, "Linux kernel the KVM probe boots (default: newest /boot/vmlinuz-*)")
	fs.DurationVar(&o.KVMProbeTime, "kvm-probe-timeout", o.KVMProbeTime, "how long the KVM probe guest may take to boot")
	fs.StringVar(&o.Metrics.BindAddress, "metrics-bind-address", o.Metrics.BindAddress, "host:port of the Prometheus endpoint (HTTPS, "+metrics.MetricsPath+"), which authenticates and authorizes callers with kube-apiserver (the --authentication-* and --authorization-* flags; RBAC: get on the non-resource URL "+metrics.MetricsPath+"); empty: no endpoint")
	fs.StringVar(&o.Metrics.CertFile, "metrics-cert-file", o.Metrics.CertFile, "serving certificate of the metrics endpoint (default: --stream-cert-file)")
	fs.StringVar(&o.Metrics.KeyFile, "metrics-key-file", o.Metrics.KeyFile, "private key of --metrics-cert-file (default: --stream-key-file)")
	fs.StringVar(&o.Driver, "hypervisor-driver", o.Driver, "hypervisor driver: libvirt, or sim (in-memory domains, no guests, no host files, networks or consoles: for scale tests only)")
	o.Simulation.AddFlags(fs)
	o.Metrics.Authentication.AddFlags(fs)
	o.Metrics.Authorization.AddFlags(fs)
}

// Complete fills the options that default to others.
func (o *Options) Complete() error {
	if o.StreamAddress == "" {
		o.StreamAddress = o.DaemonEndpoint
	}
	if o.Metrics.CertFile == "" && o.Metrics.KeyFile == "" {
		o.Metrics.CertFile, o.Metrics.KeyFile = o.StreamCertFile, o.StreamKeyFile
		if o.StreamCertDir != "" {
			current := servingcert.CurrentFile(o.StreamCertDir)
			o.Metrics.CertFile, o.Metrics.KeyFile = current, current
		}
	}
	if o.Metrics.Authentication.RemoteKubeConfigFile == "" {
		o.Metrics.Authentication.RemoteKubeConfigFile = o.Kubeconfig
	}
	if o.Metrics.Authorization.RemoteKubeConfigFile == "" {
		o.Metrics.Authorization.RemoteKubeConfigFile = o.Kubeconfig
	}
	return nil
}

// Validate checks completed options.
func (o *Options) Validate() error {
	var errs []error
	if o.HypervisorName == "" {
		errs = append(errs, errors.New("--hypervisor-name is required"))
	} else if msgs := validation.IsDNS1123Subdomain(o.HypervisorName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--hypervisor-name %q: %s", o.HypervisorName, strings.Join(msgs, "; ")))
	}
	for k, v := range o.NodeLabels {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--node-labels key %q: %s", k, strings.Join(msgs, "; ")))
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--node-labels value %q: %s", v, strings.Join(msgs, "; ")))
		}
	}
	if p, err := netip.ParsePrefix(o.ManagedNetworkPool); err != nil || !p.Addr().Is4() || p.Bits() > 24 {
		errs = append(errs, fmt.Errorf("--managed-network-pool must be an IPv4 prefix of /24 or larger, got %q", o.ManagedNetworkPool))
	}
	for _, br := range o.AllowedBridges {
		if err := network.ValidateOperatorBridge(br); err != nil {
			errs = append(errs, fmt.Errorf("--allowed-bridges: %w", err))
		}
	}
	if o.StateDir == "" || !strings.HasPrefix(o.StateDir, "/") {
		errs = append(errs, fmt.Errorf("--state-dir must be an absolute path, got %q", o.StateDir))
	}
	errs = append(errs, vesselvalidation.ValidateHostPathRoots(o.AllowedHostPathRoots, o.WritableHostPathRoots)...)
	if _, err := o.images(); err != nil {
		errs = append(errs, err)
	}
	if o.MaxVMs < 1 {
		errs = append(errs, fmt.Errorf("--max-vms must be at least 1, got %d", o.MaxVMs))
	}
	if o.CPUAllocationRatio < 1 {
		errs = append(errs, fmt.Errorf("--cpu-allocation-ratio must be at least 1, got %d", o.CPUAllocationRatio))
	}
	if o.ReservedCPUs < 0 {
		errs = append(errs, fmt.Errorf("--reserved-cpus must not be negative, got %d", o.ReservedCPUs))
	}
	if q, err := resource.ParseQuantity(o.ReservedMemory); err != nil {
		errs = append(errs, fmt.Errorf("--reserved-memory: %w", err))
	} else if q.Sign() < 0 {
		errs = append(errs, fmt.Errorf("--reserved-memory must not be negative, got %s", o.ReservedMemory))
	}
	if o.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("--heartbeat-interval must be positive"))
	}
	if o.ResyncPeriod <= 0 {
		errs = append(errs, fmt.Errorf("--resync-period must be positive"))
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst < 1 {
		errs = append(errs, fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive, got %v and %d", o.KubeAPIQPS, o.KubeAPIBurst))
	}
	if o.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers must be at least 1, got %d", o.Workers))
	}
	if o.StreamCertDir != "" {
		if o.StreamCertFile != "" || o.StreamKeyFile != "" {
			errs = append(errs, errors.New("--stream-cert-dir (a certificate from the CSR API) and --stream-cert-file/--stream-key-file exclude each other"))
		}
		if o.StreamClientCAFile == "" {
			errs = append(errs, errors.New("--stream-cert-dir needs --stream-client-ca-file"))
		}
		if o.StreamAddress == "" {
			errs = append(errs, errors.New("the console stream server needs --stream-address or --daemon-endpoint"))
		}
		if o.StreamCertWait <= 0 {
			errs = append(errs, errors.New("--stream-cert-wait must be positive"))
		}
	} else if o.StreamCertFile != "" || o.StreamKeyFile != "" || o.StreamClientCAFile != "" {
		if o.StreamCertFile == "" || o.StreamKeyFile == "" || o.StreamClientCAFile == "" {
			errs = append(errs, errors.New("--stream-cert-file, --stream-key-file and --stream-client-ca-file go together"))
		}
		if o.StreamAddress == "" {
			errs = append(errs, errors.New("the console stream server needs --stream-address or --daemon-endpoint"))
		}
	}
	if o.MigrationBindAddress != "" {
		if o.StreamCertFile == "" && o.StreamCertDir == "" {
			errs = append(errs, errors.New("--migration-bind-address needs the stream server's certificate (--stream-cert-file or --stream-cert-dir)"))
		}
		if host, _, err := net.SplitHostPort(o.MigrationBindAddress); err != nil || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() {
			errs = append(errs, fmt.Errorf("--migration-bind-address must be IP:port of one address, got %q", o.MigrationBindAddress))
		}
	}
	errs = append(errs, o.Metrics.Validate()...)
	errs = append(errs, o.validateSimulation()...)
	for flag, v := range map[string]string{"--events": o.Events, "--kvm": o.KVM} {
		if v != "auto" && v != "true" && v != "false" {
			errs = append(errs, fmt.Errorf("%s must be auto, true or false, got %q", flag, v))
		}
	}
	return errors.Join(errs...)
}

// images is the image cache configuration the flags describe.
func (o *Options) images() (disks.CacheConfig, error) {
	var errs []error
	cidrs, err := disks.ParseCIDRs(o.ImageAllowedCIDRs)
	if err != nil {
		errs = append(errs, fmt.Errorf("--image-allowed-cidrs: %w", err))
	}
	egress := disks.Egress{AllowedCIDRs: cidrs}
	if o.ImageProxy != "" {
		u, err := url.Parse(o.ImageProxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--image-proxy %q must be an http, https or socks5 URL", o.ImageProxy))
		}
		egress.Proxy = u
	}
	size := func(flag, v string) int64 {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive quantity such as 20Gi, got %q", flag, v))
			return 0
		}
		return q.Value()
	}
	cfg := disks.CacheConfig{
		Egress:          egress,
		MaxImageSize:    size("--image-max-size", o.ImageMaxSize),
		MaxVirtualSize:  size("--disk-max-virtual-size", o.DiskMaxVirtualSize),
		MaxCacheSize:    size("--image-cache-size", o.ImageCacheSize),
		DownloadTimeout: o.ImageDownloadTimeout,
	}
	if o.ImageDownloadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--image-download-timeout must be positive"))
	}
	return cfg, errors.Join(errs...)
}

// Config is what Run needs, built from completed and validated options.
type Config struct {
	// Agent configures the node agent. Run settles Agent.KVM (see ProbeKVM).
	Agent agent.Config
	// Simulated are the agents of simulated hypervisors (--hypervisor-driver=sim),
	// run instead of Agent, all in this process.
	Simulated []agent.Config
	// Libvirt is Agent.Hypervisor; Run connects it. Nil with simulated
	// hypervisors.
	Libvirt       *hypervisor.Libvirt
	LibvirtSocket string
	// ProbeKVM makes Run decide Agent.KVM with a real boot of ProbeKernel
	// (empty: the newest /boot/vmlinuz-*) within ProbeTimeout.
	ProbeKVM     bool
	ProbeKernel  string
	ProbeTimeout time.Duration
	// Console serves console streams on ConsoleListener with ConsoleTLS;
	// nil without a serving certificate.
	Console         *console.Server
	ConsoleListener net.Listener
	ConsoleTLS      *tls.Config
	// Metrics serves Agent.Metrics to Prometheus; nil without
	// --metrics-bind-address.
	Metrics *metrics.Server
	// ServingCert rotates the stream server's certificate through the CSR
	// API; nil with a certificate file.
	ServingCert *servingcert.Manager
}

// Config builds the clients, the libvirt connection and the console stream
// server. It listens for the stream server already, so a bad address or
// certificate fails before anything runs.
func (o *Options) Config() (*Config, error) {
	if o.Driver == DriverSim {
		return o.simulatedConfig()
	}
	restConfig, err := o.restConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	restConfig.UserAgent = "vessel-agent/" + Version
	client, err := versioned.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("build vessel.dev client: %w", err)
	}
	var events kubernetes.Interface
	if o.Events != "false" {
		kc, err := kubernetes.NewForConfig(restConfig)
		if err != nil {
			return nil, fmt.Errorf("build core client: %w", err)
		}
		if o.Events == "true" || servesEvents(kc) {
			events = kc
		} else {
			klog.Background().Info("The API server does not serve core/v1 events: not recording Events")
		}
	}
	images, err := o.images()
	if err != nil {
		return nil, err
	}
	lv := hypervisor.NewLibvirt(o.LibvirtSocket)
	// The registry comes first: it installs the controllers' queue metrics.
	var consoleServer *console.Server
	registryOpts := metrics.Options{Hypervisor: o.HypervisorName, Version: Version}
	serves := o.StreamCertFile != "" || o.StreamCertDir != ""
	if serves {
		registryOpts.ConsoleSessions = func() int { return consoleServer.Sessions() }
	}
	registry := metrics.NewRegistry(registryOpts)
	managedNet, err := network.New(network.Config{
		Netns: network.NetnsPath(o.NetworkNamespace),
		Dir:   filepath.Join(o.StateDir, "network"),
		Pool:  netip.MustParsePrefix(o.ManagedNetworkPool),

		AllowedBridges: o.AllowedBridges,
	})
	if err != nil {
		return nil, err
	}
	c := &Config{
		Agent: agent.Config{
			Client:                client,
			Events:                events,
			Hypervisor:            lv,
			KVM:                   o.KVM == "true",
			HypervisorName:        o.HypervisorName,
			Labels:                o.NodeLabels,
			StateDir:              o.StateDir,
			AllowedHostPathRoots:  o.AllowedHostPathRoots,
			WritableHostPathRoots: o.WritableHostPathRoots,
			Images:                images,
			ReservedCPUs:          o.ReservedCPUs,
			CPUAllocationRatio:    o.CPUAllocationRatio,
			ReservedMemory:        resource.MustParse(o.ReservedMemory),
			MaxVMs:                o.MaxVMs,
			DaemonEndpoint:        o.DaemonEndpoint,
			AgentVersion:          Version,
			HeartbeatInterval:     o.HeartbeatInterval,
			ResyncPeriod:          o.ResyncPeriod,
			Workers:               o.Workers,
			Metrics:               registry,
			Network:               managedNet,
		},
		Libvirt:       lv,
		LibvirtSocket: o.LibvirtSocket,
		ProbeKVM:      o.KVM == "auto",
		ProbeKernel:   o.KVMProbeKernel,
		ProbeTimeout:  o.KVMProbeTime,
	}
	if serves {
		certFile, keyFile := o.StreamCertFile, o.StreamKeyFile
		if o.StreamCertDir != "" {
			if c.ServingCert, err = o.servingCert(restConfig); err != nil {
				return nil, err
			}
			certFile, keyFile = c.ServingCert.File(), c.ServingCert.File()
		}
		if c.ConsoleTLS, err = console.TLSConfig(certFile, keyFile, o.StreamClientCAFile); err != nil {
			return nil, err
		}
		c.Console, err = console.NewServer(console.Config{
			Backend:  &console.Libvirt{Socket: o.LibvirtSocket},
			Domains:  lv,
			StateDir: o.StateDir,
			// Port forwarding connects to guests on the managed network.
			PortForward: managedNet,
			// The vessel-apiserver's usage API (metrics.vessel.dev) is fed
			// from here, over the console's mutual TLS: agents need no
			// permission to write usage anywhere.
			Extra: map[string]http.Handler{metrics.ResourcePath: registry.ResourceHandler()},
		})
		if err != nil {
			return nil, err
		}
		consoleServer = c.Console
		if c.ConsoleListener, err = net.Listen("tcp", o.StreamAddress); err != nil {
			return nil, fmt.Errorf("console stream server: %w", err)
		}
	}
	if o.MigrationBindAddress != "" && c.ConsoleTLS != nil {
		if c.Agent.Migration, err = o.migration(c.ConsoleTLS); err != nil {
			if c.ConsoleListener != nil {
				c.ConsoleListener.Close()
			}
			return nil, err
		}
	}
	if o.Metrics.BindAddress != "" {
		if c.Metrics, err = metrics.NewServer(o.Metrics, registry); err != nil {
			if c.ConsoleListener != nil {
				c.ConsoleListener.Close()
			}
			return nil, err
		}
	}
	return c, nil
}

// migration listens for incoming migrations and sets up the agent's TLS
// identity toward other agents: the stream server's certificate.
func (o *Options) migration(streamTLS *tls.Config) (*agent.MigrationConfig, error) {
	cas, err := migrationproxy.LoadCAs(o.StreamClientCAFile)
	if err != nil {
		return nil, err
	}
	netns := network.NetnsPath(o.NetworkNamespace)
	l, err := migrationproxy.Listen(netns, o.MigrationBindAddress)
	if err != nil {
		return nil, err
	}
	return &agent.MigrationConfig{
		Listener: l,
		Endpoint: o.MigrationBindAddress,
		Creds: migrationproxy.Credentials{
			Certificate: func() (*tls.Certificate, error) { return streamTLS.GetCertificate(nil) },
			CAs:         cas,
		},
		Netns:         netns,
		LibvirtSocket: o.LibvirtSocket,
		BandwidthMiBs: o.MigrationBandwidth,
	}, nil
}

// servingCert starts the CSR-based serving certificate manager and waits
// for a first certificate (one still valid in the directory does), so that
// the servers start with one.
func (o *Options) servingCert(restConfig *rest.Config) (*servingcert.Manager, error) {
	kc, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("build client for certificate signing requests: %w", err)
	}
	var ips []net.IP
	for _, addr := range []string{o.DaemonEndpoint, o.StreamAddress} {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err == nil && ip != nil && !ip.IsUnspecified() && !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	m, err := servingcert.New(kc, o.StreamCertDir, o.HypervisorName, ips)
	if err != nil {
		return nil, err
	}
	m.Start()
	klog.Background().Info("Waiting for the stream server's certificate from the CSR API", "signer", servingcert.SignerName, "dir", o.StreamCertDir)
	ctx, cancel := context.WithTimeout(context.Background(), o.StreamCertWait)
	defer cancel()
	if err := m.WaitForCertificate(ctx); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// Defaults of --kube-api-qps and --kube-api-burst: the kubelet's. client-go's
// own (5 and 10) starve an agent whose VMs change at once: each VM start
// is several status writes, and the heartbeat waits behind them until the
// hypervisor is declared silent.
const (
	DefaultKubeAPIQPS   = 50
	DefaultKubeAPIBurst = 100
)

// restConfig loads the kubeconfig, or the in-cluster config without one.
func (o *Options) restConfig() (*rest.Config, error) {
	return o.restConfigFrom(o.Kubeconfig)
}

// restConfigFrom loads a kubeconfig (empty: in-cluster) with the agent's
// request limits.
func (o *Options) restConfigFrom(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	return cfg, nil
}

// servesEvents is true when the server has the core/v1 events resource
// (kube-apiserver does; a bare vessel-apiserver does not).
func servesEvents(kc kubernetes.Interface) bool {
	rl, err := kc.Discovery().ServerResourcesForGroupVersion("v1")
	if err != nil {
		return false
	}
	for _, r := range rl.APIResources {
		if r.Name == "events" {
			return true
		}
	}
	return false
}
