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

package replicas

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/launcher"
)

// TestKillEtcdLeader kills the leader of the vessel etcd cluster while VMs
// are being created: the two members left elect another, requests keep
// succeeding, no acknowledged create is lost, and the scheduler binds them
// all.
func TestKillEtcdLeader(t *testing.T) {
	c := controlPlane(t)
	cl := adminClients(t, c)
	ns := newNamespace(t, cl)
	heartbeatHypervisors(t, cl, ns, 2)

	etcd := etcdClient(t, c)
	leader := etcdLeader(t, c, etcd, 0)
	killed := launcher.VesselEtcdComponent(leader)
	t.Logf("%s leads the vessel etcd cluster", killed)

	stop := createLoad(cl, ns, 4, 100*time.Millisecond)
	time.Sleep(3 * time.Second)
	if err := c.Kill(killed); err != nil {
		stop()
		t.Fatal(err)
	}
	killedAt := time.Now()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Restart(ctx, killed); err != nil {
			t.Errorf("put %s back: %v", killed, err)
		}
	})
	newLeader := etcdLeader(t, c, etcd, leader)
	elected := time.Now()
	t.Logf("%s leads %v after the kill", launcher.VesselEtcdComponent(newLeader), elected.Sub(killedAt).Round(time.Millisecond))
	time.Sleep(8 * time.Second)
	outcomes := stop()

	account(t, cl, ns, outcomes, 90*time.Second)
	var after int
	for _, o := range outcomes {
		if o.err == nil && o.sent.After(elected) {
			after++
		}
	}
	// Writes the dead leader had not committed fail, as with any etcd:
	// those in flight to it, and those the others forwarded to it before
	// they noticed (etcd answers "request timed out, possibly due to
	// previous leader failure"). They were not acknowledged, so losing
	// them loses nothing; every create sent once a leader is back must
	// succeed.
	failed := failures(outcomes)
	t.Logf("%d creates, %d acknowledged after the new leader was seen, %d failed", len(outcomes), after, len(failed))
	for _, o := range failed {
		t.Logf("create %s sent %v after the kill failed after %v: %v", o.name, o.sent.Sub(killedAt).Round(time.Millisecond), o.answered.Sub(o.sent).Round(time.Millisecond), o.err)
		if o.sent.After(elected) {
			t.Errorf("create %s sent %v after the new leader was seen failed: %v", o.name, o.sent.Sub(elected).Round(time.Millisecond), o.err)
		}
	}
	if after == 0 {
		t.Error("no create was acknowledged after the new leader was seen")
	}
}

// etcdClient speaks to the vessel etcd members as the vessel-apiservers
// do: the etcd CA, the apiservers' client certificate.
func etcdClient(t *testing.T, c *launcher.Cluster) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(c.PKI.EtcdCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(c.PKI.EtcdClient.CertFile, c.PKI.EtcdClient.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}},
	}}
}

// etcdLeader waits until a member other than not (1-based; 0: any) says
// it leads, through etcd's JSON gateway (maintenance status), and returns
// it.
func etcdLeader(t *testing.T, c *launcher.Cluster, client *http.Client, not int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i, ports := range c.Ports.VesselEtcd {
			if i+1 == not {
				continue
			}
			var status struct {
				Header struct {
					MemberID string `json:"member_id"`
				} `json:"header"`
				Leader string `json:"leader"`
			}
			url := fmt.Sprintf("https://127.0.0.1:%d/v3/maintenance/status", ports.Client)
			resp, err := client.Post(url, "application/json", strings.NewReader("{}"))
			if err != nil {
				continue
			}
			err = json.NewDecoder(resp.Body).Decode(&status)
			resp.Body.Close()
			if err == nil && status.Leader != "" && status.Leader == status.Header.MemberID {
				return i + 1
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no member of the vessel etcd cluster but %d leads after 30s", not)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
