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

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/vessel-vm/vessel/launcher"
)

// profileChunk is how long each CPU profile the vessel-apiserver takes
// runs (/debug/pprof/profile needs its length up front); stop keeps the
// chunks that ended while the rounds ran and drops the one under way.
const profileChunk = 10 * time.Second

// cpuProfile collects the vessel-apiserver's CPU profile in chunks until
// stop.
type cpuProfile struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	chunks [][]byte
	err    error
}

// startCPUProfile starts profiling the vessel-apiserver of c, as the
// admin (system:masters may read /debug/pprof).
func startCPUProfile(ctx context.Context, c *launcher.Cluster) (*cpuProfile, error) {
	caPEM, err := os.ReadFile(c.PKI.ClusterCA.CertFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(c.PKI.Admin.CertFile, c.PKI.Admin.KeyFile)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
	ctx, cancel := context.WithCancel(ctx)
	p := &cpuProfile{cancel: cancel}
	p.wg.Go(func() {
		for ctx.Err() == nil {
			chunk, err := profileOnce(ctx, client, c.VesselAPIServerURL(), profileChunk)
			p.mu.Lock()
			if err != nil && ctx.Err() == nil {
				p.err = err
			}
			if len(chunk) > 0 {
				p.chunks = append(p.chunks, chunk)
			}
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	})
	return p, nil
}

func profileOnce(ctx context.Context, client *http.Client, base string, d time.Duration) ([]byte, error) {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("profile the vessel-apiserver: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("profile the vessel-apiserver: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("profile the vessel-apiserver: %s: %s", resp.Status, body)
	}
	return body, nil
}

// stop ends profiling and writes the chunks to file, file.1, file.2 ...
// (`go tool pprof file file.*` merges them).
func (p *cpuProfile) stop(file string) error {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.chunks) == 0 {
		return errors.Join(errors.New("no CPU profile of the vessel-apiserver was taken"), p.err)
	}
	for i, chunk := range p.chunks {
		name := file
		if i > 0 {
			name = fmt.Sprintf("%s.%d", file, i)
		}
		if err := os.WriteFile(name, chunk, 0o644); err != nil {
			return err
		}
	}
	return p.err
}
