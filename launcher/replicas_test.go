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

package launcher

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Several vessel-apiservers must share one etcd: each with an embedded
// etcd of its own would serve a store of its own. Start refuses that, and
// counts out of range, before it creates anything.
func TestStartRefusesReplicasWithoutSharedEtcd(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		apiServers, etcdMembers int
		want                    string
	}{
		{"two apiservers, embedded etcd", 2, 0, "need an etcd cluster to share"},
		{"too many apiservers", 10, 3, "vessel-apiservers: between 1 and 9"},
		{"negative etcd members", 1, -1, "etcd members: between 0 (embedded) and 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stateDir := filepath.Join(t.TempDir(), "state")
			_, err := Start(t.Context(), Options{StateDir: stateDir, NoAgent: true, APIServers: tc.apiServers, EtcdMembers: tc.etcdMembers})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: err = %v, want one saying %q", err, tc.want)
			}
			if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
				t.Errorf("Start created the state directory before refusing (stat: %v)", err)
			}
		})
	}
}

func TestReplicatedComponents(t *testing.T) {
	opts := Options{NoAgent: true, APIServers: 2, EtcdMembers: 3}
	got := componentNames(opts)
	want := []string{"etcd", "kube-apiserver", "kube-controller-manager", "vessel-etcd@1", "vessel-etcd@2", "vessel-etcd@3",
		"vessel-apiserver", "vessel-apiserver@2"}
	if !slices.Equal(got, want) {
		t.Errorf("components\n%v\nwant\n%v", got, want)
	}

	// The vessel etcd members stop last, with kube-apiserver's etcd, after
	// every apiserver that uses them.
	l := testLayout(t)
	for _, name := range want {
		if err := os.WriteFile(l.pidFile(name), []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	for _, f := range pidFilesInStopOrder(l) {
		order = append(order, strings.TrimSuffix(filepath.Base(f), ".pid"))
	}
	last := order[len(order)-4:]
	slices.Sort(last)
	if !slices.Equal(last, []string{"etcd", "vessel-etcd@1", "vessel-etcd@2", "vessel-etcd@3"}) {
		t.Errorf("stop order %v: the etcds are not last", order)
	}
}

// The ports of etcd members and extra apiservers are kept like the others,
// and a supervisor that adopts running components refuses saved ports of
// another shape.
func TestReplicaPorts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	shape := replicaCounts{etcdMembers: 3, apiServers: 2}
	first, err := ensurePorts(path, nil, shape)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.VesselEtcd) != 3 || len(first.VesselAPIServerPorts()) != 2 {
		t.Fatalf("ports %+v: want 3 etcd members and 2 apiservers", first)
	}
	seen := map[int]bool{}
	for _, p := range first.all(nil, shape) {
		if *p == 0 || seen[*p] {
			t.Errorf("port %d is unset or taken twice in %+v", *p, first)
		}
		seen[*p] = true
	}
	again, err := loadPorts(path, nil, shape)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.VesselEtcd, first.VesselEtcd) || !slices.Equal(again.VesselAPIServerReplicas, first.VesselAPIServerReplicas) {
		t.Errorf("loaded %+v, saved %+v", again, first)
	}
	if _, err := loadPorts(path, nil, replicaCounts{apiServers: 1}); err == nil {
		t.Error("loadPorts took ports of 3 etcd members and 2 apiservers for 1 apiserver with its embedded etcd")
	}
}
