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

// Package agenttest runs a node agent for integration tests: an in-process
// vessel-apiserver with its own embedded etcd, the test binary's own
// libvirtd (needs.Libvirt: in namespaces of its own, never the machine's),
// an image server with the test guest, and helpers to drive VMs, snapshots
// and restores and to watch the guests.
package agenttest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher/libvirtd"
	"github.com/vessel-vm/vessel/node-agent/agent"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/needs"
	"github.com/vessel-vm/vessel/node-agent/network"
)

// Namespace is where the tests' VMs live.
const Namespace = "default"

// BootTimeout bounds a TCG boot to the guest's markers, with room for a
// busy machine.
const BootTimeout = 90 * time.Second

// Image is a file served by the test's image server.
type Image struct {
	URL    string
	SHA256 string
}

// Source is the image as a VM disk or kernel source.
func (i Image) Source() *v1alpha1.ImageSource {
	return &v1alpha1.ImageSource{URL: i.URL, SHA256: i.SHA256}
}

// Env is a vessel-apiserver, libvirt, an image server and (when started)
// an agent, for one test.
type Env struct {
	T      *testing.T
	Ctx    context.Context
	Client versioned.Interface
	// Libvirt is the test's own connection to the tests' libvirtd.
	Libvirt *hypervisor.Libvirt
	// LibvirtHost is that libvirtd: LibvirtHost.URI() for virsh -c.
	LibvirtHost    libvirtd.Host
	HypervisorName string
	StateDir       string
	// Images are the test guest's files by name (vmlinuz, initrd.img,
	// disk.img).
	Images map[string]Image
	// socket is the agent's libvirt socket.
	socket string
	// consoleMarks is each VM's console log length when its last restore
	// began, by VM UID (WaitConsoleAfterRestore).
	consoleMarks sync.Map

	mu          sync.Mutex
	agentCancel context.CancelFunc
	agentDone   chan error
}

// Options change an Env.
type Options struct {
	// Socket is the agent's libvirtd socket (a proxy the test controls,
	// say); empty: the tests' libvirtd's.
	Socket string
	// HypervisorName is the agent's; empty: a random test-xxxxxx.
	HypervisorName string
	// NoGuest is for tests that boot no guest: they need not have it.
	NoGuest bool
}

// New is an Env with default options. It skips the test without what the
// tests' libvirtd needs or without the test guest (failing instead under
// VESSEL_E2E) and in -short mode.
func New(t *testing.T) *Env {
	t.Helper()
	return NewWith(t, Options{})
}

// NewWith is New with options.
func NewWith(t *testing.T, o Options) *Env {
	t.Helper()
	host := needs.Libvirt(t)
	gd := ""
	if !o.NoGuest {
		gd = needs.Guest(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	server := apiservertesting.Start(t, apiservertesting.Options{})
	lv := hypervisor.NewLibvirt(host.Socket())
	go lv.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := lv.WaitConnected(wctx); err != nil {
		t.Fatalf("connect to libvirtd: %v", err)
	}

	e := &Env{
		T: t, Ctx: ctx, Client: server.Client, Libvirt: lv, LibvirtHost: host,
		HypervisorName: o.HypervisorName,
		Images:         map[string]Image{},
		socket:         o.Socket,
	}
	if e.socket == "" {
		e.socket = host.Socket()
	}
	if e.HypervisorName == "" {
		e.HypervisorName = "test-" + rand.String(6)
	}
	// QEMU (running as root) needs to read the state dir; t.TempDir is fine.
	e.StateDir = t.TempDir()

	if gd != "" {
		e.serveGuest(gd)
	}
	// Registered after cancel and the server: runs before them, while
	// libvirt and the API are there.
	t.Cleanup(e.destroyDomains)
	return e
}

// serveGuest serves the test guest's files over HTTP, as VM images.
func (e *Env) serveGuest(dir string) {
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	e.T.Cleanup(srv.Close)
	for _, f := range []string{"vmlinuz", "initrd.img", "disk.img"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			e.T.Fatal(err)
		}
		sum := sha256.Sum256(b)
		e.Images[f] = Image{URL: srv.URL + "/" + f, SHA256: hex.EncodeToString(sum[:])}
	}
}

var (
	networkOnce sync.Once
	networkMgr  *network.Manager
	networkErr  error
)

// sharedNetwork is the managed network of the test libvirtd's namespace.
// A namespace has one (its bridges and nftables tables are the
// namespace's), so every agent of the test binary shares it, as they share
// the libvirtd; it goes with the namespace when the binary ends.
func sharedNetwork(host libvirtd.Host) (*network.Manager, error) {
	networkOnce.Do(func() {
		networkMgr, networkErr = network.New(network.Config{
			Netns: network.NetnsPath(host.Netns),
			Dir:   filepath.Join(host.Dir, "agent-network"),
		})
	})
	return networkMgr, networkErr
}

// HypervisorUID is the UID of the test's Hypervisor object, "" before the
// agent registered it.
func (e *Env) HypervisorUID() string {
	hv, err := e.Client.VesselV1alpha1().Hypervisors().Get(e.Ctx, e.HypervisorName, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return string(hv.UID)
}

// destroyDomains removes every domain this test's agent made, pass or
// fail, and no other: another Env may share the hypervisor name.
func (e *Env) destroyDomains() {
	e.StopAgent()
	uid := e.HypervisorUID()
	if uid == "" {
		return // never registered: no domain of ours
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	doms, err := e.Libvirt.List(ctx)
	if err != nil {
		e.T.Logf("cleanup: list domains: %v", err)
		return
	}
	for _, d := range doms {
		if d.Owner.Hypervisor != e.HypervisorName || d.Owner.HypervisorUID != uid {
			continue
		}
		if err := e.Libvirt.Destroy(ctx, d.UUID); err != nil {
			e.T.Logf("cleanup: destroy %s: %v", d.Name, err)
		}
		if err := e.Libvirt.Undefine(ctx, d.UUID); err != nil {
			e.T.Logf("cleanup: undefine %s: %v", d.Name, err)
		}
	}
}

// StartAgent runs an agent until StopAgent or the end of the test. It has
// its own libvirt connection, as the vessel-agent process has.
func (e *Env) StartAgent() {
	e.T.Helper()
	ctx, cancel := context.WithCancel(e.Ctx)
	lv := hypervisor.NewLibvirt(e.socket)
	go lv.Run(ctx)
	// As vessel-agent does before it starts the agent.
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := lv.WaitConnected(wctx); err != nil {
		cancel()
		e.T.Fatalf("agent: connect to libvirtd: %v", err)
	}
	net, err := sharedNetwork(e.LibvirtHost)
	if err != nil {
		cancel()
		e.T.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Network:        net,
		Client:         e.Client,
		Hypervisor:     lv,
		HypervisorName: e.HypervisorName,
		Labels:         map[string]string{"vessel.dev/test": "true"},
		StateDir:       e.StateDir,
		// The test's image server listens on loopback.
		Images:            disks.CacheConfig{Egress: disks.Egress{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}},
		HeartbeatInterval: 2 * time.Second,
		ResyncPeriod:      5 * time.Second,
		ACPIInterval:      2 * time.Second,
		Workers:           4,
	})
	if err != nil {
		cancel()
		e.T.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e.mu.Lock()
	e.agentCancel, e.agentDone = cancel, done
	e.mu.Unlock()
}

// StopAgent stops the agent the way a crash would look to the guests:
// nothing is shut down, domains keep running.
func (e *Env) StopAgent() {
	e.mu.Lock()
	cancel, done := e.agentCancel, e.agentDone
	e.agentCancel, e.agentDone = nil, nil
	e.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			e.T.Logf("agent exited: %v", err)
		}
	case <-time.After(30 * time.Second):
		e.T.Errorf("agent did not stop within 30s")
	}
}

// Main sets up logging (SetupLogging), runs the package's tests and removes
// the tests' libvirtd after them (needs.Main). Call it from TestMain.
func Main(m *testing.M) {
	SetupLogging()
	needs.Main(m)
}

// SetupLogging lets VESSEL_TEST_V=2 show the agent's decisions; Main calls
// it.
func SetupLogging() {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if v := os.Getenv("VESSEL_TEST_V"); v != "" {
		_ = fs.Set("v", v)
	}
}
