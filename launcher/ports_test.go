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
	"path/filepath"
	"testing"
)

func TestPortsAreKeptUnlessTaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	first, err := ensurePorts(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range first.all() {
		if *p == 0 || seen[*p] {
			t.Fatalf("ports not distinct and set: %+v", first)
		}
		seen[*p] = true
	}

	again, err := ensurePorts(path)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("ports changed between starts: %+v, then %+v", first, again)
	}

	// Something else took kube-apiserver's port meanwhile.
	l, err := listenLoopback(first.KubeAPIServer)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	moved, err := ensurePorts(path)
	if err != nil {
		t.Fatal(err)
	}
	if moved.KubeAPIServer == first.KubeAPIServer {
		t.Error("kept a port that is now taken")
	}
	if moved.EtcdClient != first.EtcdClient || moved.EtcdPeer != first.EtcdPeer {
		t.Errorf("free ports changed too: %+v, then %+v", first, moved)
	}
}

func TestPortsFileUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	writeFile(t, path, "{not json")
	ports, err := ensurePorts(path)
	if err != nil {
		t.Fatal(err)
	}
	if ports.KubeAPIServer == 0 {
		t.Error("no port chosen after an unreadable ports file")
	}
}
