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
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
)

// profileServers takes CPU profiles of kube-apiserver and the
// vessel-apiserver (started with --profiling) for d, at once, as the admin,
// into dir.
func profileServers(ctx context.Context, env *environment, dir string, d time.Duration) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Print(err)
		return
	}
	servers := map[string]string{
		"kube-apiserver":   env.admin.Host,
		"vessel-apiserver": fmt.Sprintf("https://127.0.0.1:%d", env.cluster.Ports.VesselAPIServer),
	}
	transport, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{
		Insecure: true, CertFile: env.admin.CertFile, KeyFile: env.admin.KeyFile,
		CertData: env.admin.CertData, KeyData: env.admin.KeyData,
	}})
	if err != nil {
		log.Print(err)
		return
	}
	client := &http.Client{Transport: transport, Timeout: d + 30*time.Second}
	done := make(chan struct{}, len(servers))
	for name, base := range servers {
		go func() {
			defer func() { done <- struct{}{} }()
			url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds()))
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err != nil {
				log.Printf("profile %s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				log.Printf("profile %s: %s: %s", name, resp.Status, body)
				return
			}
			path := filepath.Join(dir, name+".pprof")
			f, err := os.Create(path)
			if err != nil {
				log.Print(err)
				return
			}
			defer f.Close()
			if _, err := io.Copy(f, resp.Body); err != nil {
				log.Printf("profile %s: %v", name, err)
				return
			}
			log.Printf("CPU profile of %s: %s", name, path)
		}()
	}
	for range servers {
		<-done
	}
}
