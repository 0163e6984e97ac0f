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

package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var testOptions = Options{Users: []string{"alice", "bob"}, Hypervisors: []string{"hv1", "hv2"}, AgentHosts: []string{"192.0.2.7"}}

func TestPKIChainsAndNames(t *testing.T) {
	p, err := Ensure(t.TempDir(), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	serving := x509.ExtKeyUsageServerAuth
	client := x509.ExtKeyUsageClientAuth
	tests := []struct {
		name   string
		pair   CertKey
		ca     CertKey
		usage  x509.ExtKeyUsage
		cn     string
		orgs   []string
		hosts  []string // each must pass VerifyHostname
		absent []string // each must fail VerifyHostname
	}{
		{
			name: "kube-apiserver serving", pair: p.KubeAPIServer, ca: p.ClusterCA, usage: serving,
			cn:    "kube-apiserver",
			hosts: []string{"127.0.0.1", "localhost", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.96.0.1"},
		},
		{
			name: "front-proxy client", pair: p.FrontProxyClient, ca: p.FrontProxyCA, usage: client,
			cn: "front-proxy-client",
		},
		{
			name: "admin", pair: p.Admin, ca: p.ClusterCA, usage: client,
			cn: "kubernetes-admin", orgs: []string{"system:masters"},
		},
		{name: "alice", pair: p.Users["alice"], ca: p.ClusterCA, usage: client, cn: "alice"},
		{name: "bob", pair: p.Users["bob"], ca: p.ClusterCA, usage: client, cn: "bob"},
		{
			name: "vessel-apiserver serving", pair: p.VesselAPIServer, ca: p.ClusterCA, usage: serving,
			cn:     "vessel-apiserver",
			hosts:  []string{"vessel-apiserver.vessel-system.svc", "127.0.0.1", "localhost"},
			absent: []string{"kubernetes.default.svc"},
		},
		{
			name: "vessel-apiserver client", pair: p.VesselAPIServerClient, ca: p.ClusterCA, usage: client,
			cn:   "system:serviceaccount:vessel-system:vessel-apiserver",
			orgs: []string{"system:serviceaccounts", "system:serviceaccounts:vessel-system"},
		},
		{
			name: "agent serving of hv1", pair: p.AgentServers["hv1"], ca: p.AgentCA, usage: serving,
			cn: "system:vessel-agent:hv1", hosts: []string{"hv1", "127.0.0.1", "192.0.2.7"},
			absent: []string{"hv2", "localhost"},
		},
		{
			name: "agent serving of hv2", pair: p.AgentServers["hv2"], ca: p.AgentCA, usage: serving,
			cn: "system:vessel-agent:hv2", hosts: []string{"hv2", "127.0.0.1", "192.0.2.7"},
			absent: []string{"hv1", "localhost"},
		},
		{
			name: "apiserver to agent client", pair: p.AgentClient, ca: p.AgentCA, usage: client,
			cn: "vessel-apiserver",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, _, err := loadPair(tt.pair)
			if err != nil {
				t.Fatal(err)
			}
			ca, err := loadCert(tt.ca.CertFile)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tt.usage}}
			if _, err := cert.Verify(opts); err != nil {
				t.Errorf("does not verify against %s: %v", tt.ca.CertFile, err)
			}
			if cert.Subject.CommonName != tt.cn {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tt.cn)
			}
			if !slices.Equal(cert.Subject.Organization, tt.orgs) {
				t.Errorf("O = %q, want %q", cert.Subject.Organization, tt.orgs)
			}
			for _, h := range tt.hosts {
				if err := cert.VerifyHostname(h); err != nil {
					t.Errorf("SAN %s: %v", h, err)
				}
			}
			for _, h := range tt.absent {
				if cert.VerifyHostname(h) == nil {
					t.Errorf("unexpected SAN %s", h)
				}
			}
			if cert.IsCA {
				t.Error("leaf certificate is a CA")
			}
		})
	}

	// The front-proxy CA must not vouch for users: otherwise any client
	// certificate could set X-Remote-User on an aggregated server.
	t.Run("front-proxy CA does not sign users", func(t *testing.T) {
		fp, err := loadCert(p.FrontProxyCA.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		admin, err := loadCert(p.Admin.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(fp)
		if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{client}}); err == nil {
			t.Error("admin certificate verifies against the front-proxy CA")
		}
	})
}

func TestPKIServiceAccountKeyPair(t *testing.T) {
	p, err := Ensure(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := loadKey(p.ServiceAccountKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p.ServiceAccountPublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("service-account public key is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Error("sa.pub is not the public half of sa.key")
	}
}

func TestPKIPrivateKeysArePrivate(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(dir, testOptions); err != nil {
		t.Fatal(err)
	}
	keys, err := filepath.Glob(filepath.Join(dir, "*.key"))
	if err != nil || len(keys) == 0 {
		t.Fatalf("no keys found: %v", err)
	}
	for _, k := range keys {
		fi, err := os.Stat(k)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(k), perm)
		}
	}
}

func TestPKIIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	first, err := Ensure(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	before := readDir(t, dir)
	second, err := Ensure(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if changed := changedFiles(before, readDir(t, dir)); len(changed) > 0 {
		t.Errorf("second run rewrote %v", changed)
	}
	if first.KubeAPIServer != second.KubeAPIServer || !maps.Equal(first.Users, second.Users) {
		t.Error("second run returned different paths")
	}
}

func TestPKIRegenerates(t *testing.T) {
	tests := []struct {
		name        string
		breakIt     func(t *testing.T, dir string)
		opts        Options
		wantChanged []string
	}{
		{
			name:        "corrupt leaf certificate",
			breakIt:     func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "alice.crt"), "garbage") },
			opts:        testOptions,
			wantChanged: []string{"alice.crt", "alice.key"},
		},
		{
			name: "key that does not match its certificate",
			breakIt: func(t *testing.T, dir string) {
				data, err := os.ReadFile(filepath.Join(dir, "bob.key"))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "alice.key"), string(data))
			},
			opts:        testOptions,
			wantChanged: []string{"alice.crt", "alice.key"},
		},
		{
			name: "missing agent CA",
			breakIt: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "agent-ca.key")); err != nil {
					t.Fatal(err)
				}
			},
			opts: testOptions,
			wantChanged: []string{
				"agent-ca.crt", "agent-ca.key",
				"agent-server-hv1.crt", "agent-server-hv1.key",
				"agent-server-hv2.crt", "agent-server-hv2.key",
				"agent-client.crt", "agent-client.key",
			},
		},
		{
			name:        "changed agent hosts",
			breakIt:     func(*testing.T, string) {},
			opts:        Options{Users: testOptions.Users, Hypervisors: testOptions.Hypervisors, AgentHosts: []string{"192.0.2.8"}},
			wantChanged: []string{"agent-server-hv1.crt", "agent-server-hv1.key", "agent-server-hv2.crt", "agent-server-hv2.key"},
		},
		{
			name:        "a new hypervisor",
			breakIt:     func(*testing.T, string) {},
			opts:        Options{Users: testOptions.Users, Hypervisors: []string{"hv1", "hv2", "hv3"}, AgentHosts: testOptions.AgentHosts},
			wantChanged: []string{"agent-server-hv3.crt", "agent-server-hv3.key"},
		},
		{
			name:        "stale service-account public key",
			breakIt:     func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "sa.pub"), "stale") },
			opts:        testOptions,
			wantChanged: []string{"sa.pub"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Ensure(dir, testOptions); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(t, dir)
			before := readDir(t, dir)
			if _, err := Ensure(dir, tt.opts); err != nil {
				t.Fatal(err)
			}
			got := changedFiles(before, readDir(t, dir))
			if want := dedupe(tt.wantChanged); !slices.Equal(got, want) {
				t.Errorf("changed files = %v, want %v", got, want)
			}
		})
	}
}

func TestPKIRenewsBeforeExpiry(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	g := &generator{dir: dir, now: func() time.Time { return start }}
	if _, err := g.ensure(testOptions); err != nil {
		t.Fatal(err)
	}
	before := readDir(t, dir)

	// Inside the leaves' renewal window, but far from the CAs'.
	g.now = func() time.Time { return start.Add(leafValidity - leafRenewBefore + time.Hour) }
	if _, err := g.ensure(testOptions); err != nil {
		t.Fatal(err)
	}
	changed := changedFiles(before, readDir(t, dir))
	for _, f := range changed {
		if f == "ca.crt" || f == "front-proxy-ca.crt" || f == "agent-ca.crt" {
			t.Errorf("CA %s renewed a year early", f)
		}
	}
	if !slices.Contains(changed, "kube-apiserver.crt") || !slices.Contains(changed, "alice.crt") {
		t.Errorf("leaves close to expiry were kept; changed: %v", changed)
	}
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(data)
	}
	return files
}

// changedFiles lists, sorted, the files added, removed or rewritten.
func changedFiles(before, after map[string]string) []string {
	var changed []string
	for name, data := range after {
		if old, ok := before[name]; !ok || old != data {
			changed = append(changed, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)
	return changed
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The vessel etcd cluster trusts only its own CA: a member's certificate
// serves clients and peers and is a client to its peers; the apiservers'
// is a client only; no certificate the cluster CA signed opens it. Without
// members (the embedded etcd) nothing of it is issued.
func TestPKIEtcdCluster(t *testing.T) {
	dir := t.TempDir()
	none, err := Ensure(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if none.EtcdCA != (CertKey{}) || len(none.EtcdMembers) != 0 {
		t.Errorf("etcd certificates issued without members: %+v %+v", none.EtcdCA, none.EtcdMembers)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd-ca.crt")); !os.IsNotExist(err) {
		t.Errorf("etcd-ca.crt written without members (stat: %v)", err)
	}

	opts := testOptions
	opts.EtcdMembers = 3
	p, err := Ensure(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.EtcdMembers) != 3 {
		t.Fatalf("%d member certificates, want 3", len(p.EtcdMembers))
	}
	ca, err := loadCert(p.EtcdCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	verify := func(pair CertKey, usage x509.ExtKeyUsage) error {
		cert, _, err := loadPair(pair)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	for i, member := range p.EtcdMembers {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if err := verify(member, usage); err != nil {
				t.Errorf("member %d, usage %v: %v", i+1, usage, err)
			}
		}
		cert, _, _ := loadPair(member)
		if err := cert.VerifyHostname("127.0.0.1"); err != nil {
			t.Errorf("member %d: %v", i+1, err)
		}
	}
	if err := verify(p.EtcdClient, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("apiservers' client certificate: %v", err)
	}
	if verify(p.EtcdClient, x509.ExtKeyUsageServerAuth) == nil {
		t.Error("the apiservers' client certificate may serve")
	}
	if verify(p.Admin, x509.ExtKeyUsageClientAuth) == nil {
		t.Error("the admin's certificate verifies against the etcd CA")
	}
}
