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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlags(t *testing.T) {
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{
		"--kubeconfig=/etc/vessel/agent.kubeconfig",
		"--hypervisor-name=hv-1",
		"--node-labels=zone=a,vessel.dev/gpu=none",
		"--state-dir=/srv/vessel",
		"--libvirt-socket=/tmp/libvirt-sock",
		"--allowed-host-path-roots=/srv/images,/data",
		"--writable-host-path-roots=/srv/vm",
		"--image-allowed-cidrs=10.0.5.0/24,127.0.0.2",
		"--image-proxy=http://proxy.example.com:3128",
		"--image-max-size=4Gi",
		"--image-download-timeout=10m",
		"--image-cache-size=100Gi",
		"--max-vms=20",
		"--reserved-cpus=1",
		"--reserved-memory=2Gi",
		"--heartbeat-interval=5s",
		"--resync-period=1m",
		"--workers=8",
		"--daemon-endpoint=10.0.0.5:10250",
		"--kvm=false",
		"--events=false",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("valid flags rejected: %v", err)
	}
	if o.Kubeconfig != "/etc/vessel/agent.kubeconfig" || o.HypervisorName != "hv-1" || o.StateDir != "/srv/vessel" ||
		o.LibvirtSocket != "/tmp/libvirt-sock" || o.MaxVMs != 20 || o.ReservedCPUs != 1 || o.ReservedMemory != "2Gi" ||
		o.HeartbeatInterval != 5*time.Second || o.ResyncPeriod != time.Minute || o.Workers != 8 ||
		o.DaemonEndpoint != "10.0.0.5:10250" || o.KVM != "false" || o.Events != "false" {
		t.Errorf("parsed options = %+v", o)
	}
	if len(o.NodeLabels) != 2 || o.NodeLabels["zone"] != "a" || o.NodeLabels["vessel.dev/gpu"] != "none" {
		t.Errorf("labels = %v", o.NodeLabels)
	}
	if strings.Join(o.AllowedHostPathRoots, ",") != "/srv/images,/data" || strings.Join(o.WritableHostPathRoots, ",") != "/srv/vm" {
		t.Errorf("roots = %v, writable %v", o.AllowedHostPathRoots, o.WritableHostPathRoots)
	}
	images, err := o.images()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(images.Egress.AllowedCIDRs) != "[10.0.5.0/24 127.0.0.2/32]" || images.Egress.Proxy.Host != "proxy.example.com:3128" ||
		images.MaxImageSize != 4<<30 || images.DownloadTimeout != 10*time.Minute || images.MaxCacheSize != 100<<30 {
		t.Errorf("image cache config = %+v", images)
	}
}

func TestDefaults(t *testing.T) {
	o := NewOptions()
	if o.StateDir != "/var/lib/vessel/agent" || strings.Join(o.AllowedHostPathRoots, ",") != "/var/lib/vessel/images" ||
		o.LibvirtSocket != "/run/libvirt/libvirt-sock" || o.HeartbeatInterval != 10*time.Second {
		t.Errorf("defaults = %+v", o)
	}
	o.HypervisorName = "hv"
	if err := o.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	// Safe by default: no writable host paths, no internal addresses, no
	// proxy from the environment, bounded downloads and cache.
	images, err := o.images()
	if err != nil || len(o.WritableHostPathRoots) != 0 || len(images.Egress.AllowedCIDRs) != 0 || images.Egress.Proxy != nil ||
		images.MaxImageSize != 20<<30 || images.DownloadTimeout != 30*time.Minute || images.MaxCacheSize != 50<<30 {
		t.Errorf("image defaults = %+v, %v", images, err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"no name", func(o *Options) { o.HypervisorName = "" }, "--hypervisor-name is required"},
		{"bad name", func(o *Options) { o.HypervisorName = "Bad_Name" }, "--hypervisor-name"},
		{"bad label key", func(o *Options) { o.NodeLabels = map[string]string{"bad key": "v"} }, "--node-labels key"},
		{"bad label value", func(o *Options) { o.NodeLabels = map[string]string{"k": "bad value!"} }, "--node-labels value"},
		{"relative state dir", func(o *Options) { o.StateDir = "state" }, "--state-dir"},
		{"relative root", func(o *Options) { o.AllowedHostPathRoots = []string{"images"} }, "--allowed-host-path-roots"},
		{"relative writable root", func(o *Options) { o.WritableHostPathRoots = []string{"vm"} }, "--writable-host-path-roots"},
		{"writable root inside the shared root", func(o *Options) { o.WritableHostPathRoots = []string{"/var/lib/vessel/images/rw"} }, "overlap"},
		{"bad CIDR", func(o *Options) { o.ImageAllowedCIDRs = []string{"localhost"} }, "--image-allowed-cidrs"},
		{"bad proxy", func(o *Options) { o.ImageProxy = "proxy:3128" }, "--image-proxy"},
		{"bad image size", func(o *Options) { o.ImageMaxSize = "big" }, "--image-max-size"},
		{"zero cache size", func(o *Options) { o.ImageCacheSize = "0" }, "--image-cache-size"},
		{"no download time", func(o *Options) { o.ImageDownloadTimeout = 0 }, "--image-download-timeout"},
		{"no VMs", func(o *Options) { o.MaxVMs = 0 }, "--max-vms"},
		{"negative cpus", func(o *Options) { o.ReservedCPUs = -1 }, "--reserved-cpus"},
		{"bad memory", func(o *Options) { o.ReservedMemory = "lots" }, "--reserved-memory"},
		{"negative memory", func(o *Options) { o.ReservedMemory = "-1Gi" }, "--reserved-memory"},
		{"no heartbeat", func(o *Options) { o.HeartbeatInterval = 0 }, "--heartbeat-interval"},
		{"no resync", func(o *Options) { o.ResyncPeriod = 0 }, "--resync-period"},
		{"no workers", func(o *Options) { o.Workers = 0 }, "--workers"},
		{"bad kvm", func(o *Options) { o.KVM = "maybe" }, "--kvm"},
		{"bad events", func(o *Options) { o.Events = "yes" }, "--events"},
	}
	for _, tt := range tests {
		o := NewOptions()
		o.HypervisorName = "hv"
		tt.mutate(o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error about %s", tt.name, err, tt.want)
		}
	}
}

func TestCompleteDefaultsTheStreamAddressToTheDaemonEndpoint(t *testing.T) {
	o := NewOptions()
	o.HypervisorName = "hv"
	o.DaemonEndpoint = "10.0.0.5:10250"
	o.StreamCertFile, o.StreamKeyFile, o.StreamClientCAFile = "/c", "/k", "/ca"
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if o.StreamAddress != "10.0.0.5:10250" {
		t.Errorf("stream address = %q, want the daemon endpoint", o.StreamAddress)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("completed options rejected: %v", err)
	}

	o = NewOptions()
	o.HypervisorName = "hv"
	o.StreamCertFile, o.StreamKeyFile, o.StreamClientCAFile = "/c", "/k", "/ca"
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--stream-address or --daemon-endpoint") {
		t.Errorf("stream server without an address: Validate() = %v", err)
	}
}

func TestConfigCarriesTheOptionsToTheAgent(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{
		"--kubeconfig=" + kubeconfig, "--hypervisor-name=hv-1", "--state-dir=/srv/vessel",
		"--reserved-memory=1Gi", "--max-vms=7", "--events=false", "--kvm=auto", "--workers=3",
	}); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	a := c.Agent
	if a.Client == nil || a.Events != nil || a.Hypervisor == nil || a.HypervisorName != "hv-1" || a.StateDir != "/srv/vessel" ||
		a.MaxVMs != 7 || a.ReservedMemory.String() != "1Gi" || a.Workers != 3 || a.AgentVersion != Version {
		t.Errorf("agent config = %+v", a)
	}
	if !c.ProbeKVM || c.Console != nil || c.ConsoleListener != nil {
		t.Errorf("config = %+v: want a KVM probe and no console server", c)
	}
}

func TestMetricsEndpointDefaultsToTheStreamCertificateAndTheAgentKubeconfig(t *testing.T) {
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{
		"--kubeconfig=/etc/vessel/agent.kubeconfig", "--hypervisor-name=hv-1",
		"--daemon-endpoint=10.0.0.5:10250",
		"--stream-cert-file=/c", "--stream-key-file=/k", "--stream-client-ca-file=/ca",
		"--metrics-bind-address=10.0.0.5:10261",
		"--authorization-always-allow-paths=/healthz",
	}); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("valid metrics flags rejected: %v", err)
	}
	m := o.Metrics
	if m.BindAddress != "10.0.0.5:10261" || m.CertFile != "/c" || m.KeyFile != "/k" ||
		m.Authentication.RemoteKubeConfigFile != "/etc/vessel/agent.kubeconfig" ||
		m.Authorization.RemoteKubeConfigFile != "/etc/vessel/agent.kubeconfig" ||
		strings.Join(m.Authorization.AlwaysAllowPaths, ",") != "/healthz" {
		t.Errorf("metrics options = %+v", m)
	}

	o = NewOptions()
	o.HypervisorName = "hv"
	o.Metrics.BindAddress = "127.0.0.1:10261"
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "serving certificate") {
		t.Errorf("metrics endpoint without a certificate: Validate() = %v", err)
	}
}

// --stream-cert-dir takes the certificate from the CSR API: the metrics
// endpoint serves the same rotated file, and certificate files are refused
// alongside it.
func TestStreamCertDir(t *testing.T) {
	parse := func(args ...string) (*Options, error) {
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(append([]string{"--hypervisor-name=hv-1", "--daemon-endpoint=10.0.0.5:10260"}, args...)); err != nil {
			t.Fatal(err)
		}
		if err := o.Complete(); err != nil {
			t.Fatal(err)
		}
		return o, o.Validate()
	}
	o, err := parse("--stream-cert-dir=/var/lib/vessel/pki", "--stream-client-ca-file=/ca", "--metrics-bind-address=10.0.0.5:10261")
	if err != nil {
		t.Fatalf("valid --stream-cert-dir rejected: %v", err)
	}
	if want := "/var/lib/vessel/pki/vessel-agent-serving-current.pem"; o.Metrics.CertFile != want || o.Metrics.KeyFile != want {
		t.Errorf("metrics certificate = %q, %q; want %q", o.Metrics.CertFile, o.Metrics.KeyFile, want)
	}
	if _, err := parse("--stream-cert-dir=/d", "--stream-cert-file=/c", "--stream-key-file=/k", "--stream-client-ca-file=/ca"); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Errorf("--stream-cert-dir with --stream-cert-file: Validate() = %v", err)
	}
	if _, err := parse("--stream-cert-dir=/d"); err == nil || !strings.Contains(err.Error(), "--stream-cert-dir needs --stream-client-ca-file") {
		t.Errorf("--stream-cert-dir without a client CA: Validate() = %v", err)
	}
}
