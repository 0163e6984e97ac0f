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

// Package agent is the Vessel node agent: it wires the node's controllers
// (Hypervisor status, VMs, snapshots, restores) to shared informers, one
// image cache, one event recorder and the VM locks, and runs them.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/generated/clientset/versioned/scheme"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	vesselinformers "github.com/vessel-vm/vessel/generated/informers/externalversions/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
	"github.com/vessel-vm/vessel/node-agent/controller/clone"
	"github.com/vessel-vm/vessel/node-agent/controller/migration"
	"github.com/vessel-vm/vessel/node-agent/controller/nodestatus"
	"github.com/vessel-vm/vessel/node-agent/controller/restore"
	"github.com/vessel-vm/vessel/node-agent/controller/snapshot"
	"github.com/vessel-vm/vessel/node-agent/controller/vm"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/metrics"
	"github.com/vessel-vm/vessel/node-agent/migrationproxy"
	"github.com/vessel-vm/vessel/node-agent/network"
)

// Config is what an agent needs.
type Config struct {
	// Client reaches the vessel.dev API.
	Client versioned.Interface
	// Events, when set, reaches kube-apiserver's core API for Events.
	Events kubernetes.Interface
	// Hypervisor runs the domains.
	Hypervisor hypervisor.Hypervisor
	// KVM says guests may use hardware acceleration (from ProbeKVM).
	KVM bool

	// HypervisorName names this node's Hypervisor object.
	HypervisorName string
	// Labels are put on the Hypervisor, for VM nodeSelectors.
	Labels map[string]string
	// StateDir holds the image cache (images/) and per-VM files (vms/<uid>/).
	StateDir string
	// AllowedHostPathRoots are the shared hostPath roots: VMs may read
	// files under them, never write.
	AllowedHostPathRoots []string
	// WritableHostPathRoots are hostPath roots divided per namespace: a VM
	// may use files under <root>/<its namespace>/ only.
	WritableHostPathRoots []string
	// Capacity of the host; zero fields are read from /proc.
	Capacity v1alpha1.HypervisorResources
	// Reserved is subtracted from capacity to get allocatable.
	ReservedCPUs   int32
	ReservedMemory resource.Quantity
	// CPUAllocationRatio is how many vCPUs each host CPU left after the
	// reserve may back: guests rarely keep every vCPU busy, so hypervisors
	// overcommit CPU (OpenStack's default is 16). Zero means 1.
	CPUAllocationRatio int32
	// MaxVMs is the number of VMs the node accepts.
	MaxVMs int32
	// DaemonEndpoint is published in the Hypervisor status (console streams).
	DaemonEndpoint string
	// AgentVersion is published in the Hypervisor status.
	AgentVersion string
	// Network is the managed guest network; Run applies what an earlier
	// agent set up before any VM is synced. Nil: Managed interfaces are
	// refused.
	Network *network.Manager

	HeartbeatInterval time.Duration
	ResyncPeriod      time.Duration
	// Workers is how many VMs are synced at once.
	Workers int
	// ACPIInterval is how often a shutdown request is repeated while a
	// guest ignores it.
	ACPIInterval time.Duration
	// Images bounds image downloads (egress, size, time) and the image
	// cache's size; the agent sets its Dir, OverlayDir and InUse.
	Images disks.CacheConfig
	// Simulated: provisioning touches no file and needs no managed
	// network (a simulated hypervisor, see node-agent/hypervisor/sim).
	Simulated bool
	// Migration, when set, makes this hypervisor an end of live
	// migrations.
	Migration *MigrationConfig
	// Metrics, when set, gets the per-VM and image cache metrics once the
	// informers exist. Build it before New: it installs the controllers'
	// queue metrics.
	Metrics *metrics.Registry
}

// MigrationConfig is how the agent takes part in live migrations.
type MigrationConfig struct {
	// Listener accepts incoming migrations (in the hypervisor's network
	// namespace, on its fabric address); Endpoint is its address, as
	// published.
	Listener net.Listener
	Endpoint string
	// Creds are the agent's serving certificate and the agents' CA.
	Creds migrationproxy.Credentials
	// Netns is the hypervisor's network namespace path.
	Netns string
	// LibvirtSocket is the local libvirtd's socket, for incoming streams.
	LibvirtSocket string
	// BandwidthMiBs caps outgoing migrations (0: unlimited).
	BandwidthMiBs uint64
}

// migrationWorkers is how many migrations' events are handled at once;
// migrations themselves run in their own goroutines.
const migrationWorkers = 2

// Defaults for Config's zero values.
const (
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultResyncPeriod      = vm.DefaultResyncPeriod
	DefaultWorkers           = 4
	DefaultACPIInterval      = vm.DefaultACPIInterval
	DefaultMaxVMs            = 64
	// DefaultCPUAllocationRatio overcommits vCPUs 8:1, half of OpenStack's default.
	DefaultCPUAllocationRatio = 8
)

// snapshotWorkers is how many snapshots (and, apart, restores) are worked
// on at once. Each holds its VM's lock, so they only overlap for different
// VMs.
const snapshotWorkers = 2

// cloneWorkers is how many clones are made at once (each holds its new
// VM's lock, and a VM source's while its image is captured).
const cloneWorkers = 2

// hypervisorLabels are the configured labels and vessel.dev/hypervisor
// naming this Hypervisor, for nodeSelectors that pick one host (clones
// land on the host holding their source's memory).
func hypervisorLabels(cfg Config) map[string]string {
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	if len(validation.IsValidLabelValue(cfg.HypervisorName)) == 0 {
		labels[v1alpha1.LabelHypervisor] = cfg.HypervisorName
	}
	return labels
}

// Agent runs the controllers of one Hypervisor.
type Agent struct {
	cfg Config
}

// New checks cfg and fills its defaults. Run starts the agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil || cfg.Hypervisor == nil {
		return nil, fmt.Errorf("agent needs a vessel client and a hypervisor")
	}
	if cfg.HypervisorName == "" {
		return nil, fmt.Errorf("agent needs a hypervisor name")
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("agent needs a state directory")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ResyncPeriod <= 0 {
		cfg.ResyncPeriod = DefaultResyncPeriod
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.ACPIInterval <= 0 {
		cfg.ACPIInterval = DefaultACPIInterval
	}
	if cfg.MaxVMs <= 0 {
		cfg.MaxVMs = DefaultMaxVMs
	}
	return &Agent{cfg: cfg}, nil
}

// Run registers the Hypervisor and runs the controllers until ctx ends. It
// returns once they have stopped; guests keep running.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg
	logger := klog.FromContext(ctx).WithValues("hypervisor", cfg.HypervisorName)
	ctx = klog.NewContext(ctx, logger)
	defer utilruntime.HandleCrashWithContext(ctx)

	// Events go to the API when it serves them, else nowhere.
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	if cfg.Events != nil {
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Events.CoreV1().Events("")})
	}
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vessel-agent", Host: cfg.HypervisorName})
	if cfg.Network != nil {
		if err := cfg.Network.Start(ctx); err != nil {
			return err
		}
	}
	clk := clock.RealClock{}

	// The VMs bound here, filtered by the server; snapshots and restores
	// cannot be, so their informers watch the whole cluster.
	nodeInformers := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.HypervisorName).String()
		}))
	clusterInformers := informers.NewSharedInformerFactory(cfg.Client, cfg.ResyncPeriod)
	vmInformer := nodeInformers.Vessel().V1alpha1().VirtualMachines()
	snapshotInformer := clusterInformers.Vessel().V1alpha1().VirtualMachineSnapshots()
	restoreInformer := clusterInformers.Vessel().V1alpha1().VirtualMachineRestores()
	cloneInformer := clusterInformers.Vessel().V1alpha1().VirtualMachineClones()
	migrationInformer := clusterInformers.Vessel().V1alpha1().VirtualMachineMigrations()
	// Registered with the factory now, before it starts: hypervisors that
	// do not migrate (simulated ones) read it only through its lister,
	// and an informer first asked for after Start would never run.
	migrationInformer.Informer()
	locks := &boundvm.Locks{}
	images := disks.NewCache(ctx, imageCacheConfig(cfg, vmInformer))
	if err := addMetrics(cfg, vmInformer, images); err != nil {
		return err
	}

	status := nodestatus.New(nodestatus.Config{
		Name:               cfg.HypervisorName,
		Labels:             hypervisorLabels(cfg),
		Capacity:           cfg.Capacity,
		ReservedCPUs:       cfg.ReservedCPUs,
		ReservedMemory:     cfg.ReservedMemory,
		CPUAllocationRatio: cfg.CPUAllocationRatio,
		MaxVMs:             cfg.MaxVMs,
		DaemonEndpoint:     cfg.DaemonEndpoint,
		MigrationEndpoint:  migrationEndpoint(cfg),
		AgentVersion:       cfg.AgentVersion,
		KVM:                cfg.KVM,
		HeartbeatInterval:  cfg.HeartbeatInterval,
	}, cfg.Client, cfg.Hypervisor, vmInformer.Lister(), clk)
	vms, err := vm.New(vm.Config{
		Node:                  cfg.HypervisorName,
		StateDir:              cfg.StateDir,
		AllowedHostPathRoots:  cfg.AllowedHostPathRoots,
		WritableHostPathRoots: cfg.WritableHostPathRoots,
		MaxDiskVirtualSize:    cmp.Or(cfg.Images.MaxVirtualSize, disks.DefaultMaxVirtualSize),
		KVM:                   cfg.KVM,
		ACPIInterval:          cfg.ACPIInterval,
		ResyncPeriod:          cfg.ResyncPeriod,
		Simulated:             cfg.Simulated,
	}, vm.Deps{
		Client:   cfg.Client,
		VMs:      vmInformer,
		Restores: restoreInformer.Lister(),
		MigrationHolds: func(v *v1alpha1.VirtualMachine) bool {
			return migration.Holds(migrationInformer.Lister(), cfg.HypervisorName, v)
		},
		Incoming: func(uid string) bool {
			return migration.Incoming(migrationInformer.Lister(), cfg.HypervisorName, uid)
		},
		Hypervisor: cfg.Hypervisor,
		Images:     images,
		Locks:      locks,
		Identity:   status,
		Recorder:   recorder,
		Clock:      clk,
		Network:    cfg.Network,
	})
	if err != nil {
		return err
	}
	snapshots, err := snapshot.New(cfg.HypervisorName, snapshot.Deps{
		Client:     cfg.Client,
		Snapshots:  snapshotInformer,
		VMs:        vmInformer,
		Hypervisor: cfg.Hypervisor,
		Locks:      locks,
		Recorder:   recorder,
		Clock:      clk,
		StateDir:   cfg.StateDir,
	})
	if err != nil {
		return err
	}
	clones, err := clone.New(clone.Config{Node: cfg.HypervisorName, StateDir: cfg.StateDir}, clone.Deps{
		Client:       cfg.Client,
		Clones:       cloneInformer,
		Snapshots:    snapshotInformer.Lister(),
		VMs:          vmInformer,
		VMController: vms,
		Hypervisor:   cfg.Hypervisor,
		Locks:        locks,
		Identity:     status,
		Recorder:     recorder,
		Clock:        clk,
		Network:      cfg.Network,
	})
	if err != nil {
		return err
	}
	restores, err := restore.New(cfg.HypervisorName, restore.Deps{
		Client:       cfg.Client,
		Restores:     restoreInformer,
		Snapshots:    snapshotInformer.Lister(),
		VMs:          vmInformer,
		VMController: vms,
		Hypervisor:   cfg.Hypervisor,
		Locks:        locks,
		Recorder:     recorder,
		Clock:        clk,
	})
	if err != nil {
		return err
	}

	// Only libvirt migrates; other hypervisors (tests' fakes) do not.
	var migrations *migration.Controller
	if _, ok := cfg.Hypervisor.(hypervisor.Migrator); ok {
		if migrations, err = newMigrations(cfg, migrationInformer, vmInformer, locks, status, recorder, clk, vms); err != nil {
			return err
		}
	}

	// Registered first: the VM controller stamps domains with the
	// Hypervisor's UID.
	if err := status.Register(ctx); err != nil {
		return err
	}
	nodeInformers.Start(ctx.Done())
	defer nodeInformers.Shutdown()
	clusterInformers.Start(ctx.Done())
	defer clusterInformers.Shutdown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, vmInformer.Informer().HasSynced,
		snapshotInformer.Informer().HasSynced, restoreInformer.Informer().HasSynced, cloneInformer.Informer().HasSynced, migrationInformer.Informer().HasSynced) {
		return fmt.Errorf("informers did not sync")
	}
	logger.Info("Node agent started", "kvm", cfg.KVM, "stateDir", cfg.StateDir, "hypervisorUID", status.HypervisorUID())

	var wg sync.WaitGroup
	wg.Go(func() { status.Run(ctx) })
	wg.Go(func() { vms.Run(ctx, cfg.Workers) })
	wg.Go(func() { snapshots.Run(ctx, snapshotWorkers) })
	wg.Go(func() { restores.Run(ctx, snapshotWorkers) })
	wg.Go(func() { clones.Run(ctx, cloneWorkers) })
	if migrations != nil {
		wg.Go(func() { migrations.Run(ctx, migrationWorkers) })
	}
	if m := cfg.Migration; m != nil && migrations != nil {
		server := migrations.Server(m.LibvirtSocket)
		wg.Go(func() {
			if err := server.Serve(ctx, m.Listener); err != nil {
				logger.Error(err, "Migration endpoint stopped")
			}
		})
	}
	wg.Go(func() { dispatchDomainEvents(ctx, cfg.Hypervisor, vms, status) })
	wg.Wait()
	return nil
}

// newMigrations builds the migration controller of a libvirt hypervisor.
func newMigrations(cfg Config, informer vesselinformers.VirtualMachineMigrationInformer, vmInformer vesselinformers.VirtualMachineInformer,
	locks *boundvm.Locks, status *nodestatus.Controller, recorder record.EventRecorder, clk clock.PassiveClock, vms *vm.Controller) (*migration.Controller, error) {
	return migration.New(migration.Config{
		Node:          cfg.HypervisorName,
		StateDir:      cfg.StateDir,
		Netns:         migrationNetns(cfg),
		BandwidthMiBs: migrationBandwidth(cfg),
	}, migration.Deps{
		Client:     cfg.Client,
		Migrations: informer,
		VMs:        vmInformer.Lister(),
		Hypervisor: cfg.Hypervisor,
		Locks:      locks,
		Identity:   status,
		Network:    cfg.Network,
		Creds:      migrationCreds(cfg),
		Recorder:   recorder,
		Clock:      clk,
		VMChanged:  vms.Enqueue,
	})
}

func migrationEndpoint(cfg Config) string {
	if cfg.Migration == nil {
		return ""
	}
	return cfg.Migration.Endpoint
}

func migrationNetns(cfg Config) string {
	if cfg.Migration == nil {
		return ""
	}
	return cfg.Migration.Netns
}

func migrationBandwidth(cfg Config) uint64 {
	if cfg.Migration == nil {
		return 0
	}
	return cfg.Migration.BandwidthMiBs
}

func migrationCreds(cfg Config) migrationproxy.Credentials {
	if cfg.Migration == nil {
		return migrationproxy.Credentials{}
	}
	return cfg.Migration.Creds
}

// addMetrics gives the metrics registry what it reads: this node's VMs
// with libvirt's statistics, and the image cache.
func addMetrics(cfg Config, vms vesselinformers.VirtualMachineInformer, images *disks.Cache) error {
	if cfg.Metrics == nil {
		return nil
	}
	if stats, ok := cfg.Hypervisor.(hypervisor.StatsReader); ok {
		if err := cfg.Metrics.AddVMs(stats, vms.Lister()); err != nil {
			return err
		}
	}
	return cfg.Metrics.AddImageCache(images.Usage)
}

// dispatchDomainEvents turns libvirt lifecycle events into work: a
// domain's event is its VM's, and a (re)connect to libvirtd may have
// missed anything, so every VM is looked at and the Hypervisor's
// readiness reported at once.
func dispatchDomainEvents(ctx context.Context, hv hypervisor.Hypervisor, vms *vm.Controller, status *nodestatus.Controller) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-hv.Events():
			if ev.UUID == "" {
				vms.Resync(ctx)
				status.Heartbeat()
				continue
			}
			if ev.Agent {
				vms.AgentChanged(ev.UUID)
				continue
			}
			vms.DomainChanged(ev.UUID)
		}
	}
}

// imageCacheConfig places the image cache in the state directory; images
// that VMs on this node name, or that their overlays are backed by, are
// never collected.
func imageCacheConfig(cfg Config, vms vesselinformers.VirtualMachineInformer) disks.CacheConfig {
	c := cfg.Images
	c.Dir = filepath.Join(cfg.StateDir, "images")
	c.OverlayDir = filepath.Join(cfg.StateDir, "vms")
	c.InUse = func() (map[string]bool, error) { return imagesInUse(vms) }
	return c
}

// imagesInUse is the sha256 of every image a VM bound to this node names.
func imagesInUse(vms vesselinformers.VirtualMachineInformer) (map[string]bool, error) {
	if !vms.Informer().HasSynced() {
		return nil, errors.New("the VM cache has not synced yet")
	}
	list, err := vms.Lister().List(labels.Everything())
	if err != nil {
		return nil, err
	}
	sums := map[string]bool{}
	add := func(img *v1alpha1.ImageSource) {
		if img != nil {
			sums[strings.ToLower(img.SHA256)] = true
		}
	}
	for _, vm := range list {
		if k := vm.Spec.Kernel; k != nil {
			add(k.Kernel.Image)
			if k.Initrd != nil {
				add(k.Initrd.Image)
			}
		}
		for _, d := range vm.Spec.Disks {
			add(d.Image)
		}
	}
	return sums, nil
}
