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

package apiserver

import (
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// EmbeddedEtcd is a single-member etcd run inside the apiserver process: the
// default, so that one binary serves on its own. Production points
// --etcd-servers at an etcd cluster instead.
type EmbeddedEtcd struct {
	etcd *embed.Etcd
}

// StartEmbeddedEtcd starts etcd with its data in dataDir and its client API
// on listen (for example http://127.0.0.1:2379; port 0 picks a free one), and
// waits until it serves.
func StartEmbeddedEtcd(dataDir, listen string) (*EmbeddedEtcd, error) {
	clientURL, err := url.Parse(listen)
	if err != nil {
		return nil, fmt.Errorf("parse embedded etcd listen URL %q: %w", listen, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "vessel"
	cfg.Dir = dataDir
	cfg.LogLevel = "warn"
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	// One member: the peer port is only bound on loopback, never used.
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Keep history bounded like a production etcd under kube-apiserver.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", dataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed while starting: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s not ready after 60s", dataDir)
	}
	return &EmbeddedEtcd{etcd: e}, nil
}

// ClientURL is the address the apiserver's storage connects to.
func (e *EmbeddedEtcd) ClientURL() string {
	return "http://" + e.etcd.Clients[0].Addr().String()
}

// Close stops etcd after every acknowledged write is on disk: etcd only
// acknowledges a write once it is committed to its WAL.
func (e *EmbeddedEtcd) Close() {
	e.etcd.Close()
}
