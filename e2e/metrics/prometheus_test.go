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

package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/launcher/pki"
)

// runPrometheus runs a real Prometheus server scraping the agent and the
// vessel-apiserver every 2 s as scraperUser, and checks with PromQL that
// both targets are up, the busy guest uses more than half a core and the
// idle one stays near 0.
func runPrometheus(t *testing.T, e *framework.Env, cert pki.CertKey, agentURL, apiserverURL string) {
	bin := toolPath(t, "prometheus")
	dir := t.TempDir()
	agent, _ := url.Parse(agentURL)
	apiserver, _ := url.Parse(apiserverURL)
	config := fmt.Sprintf(`global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
- job_name: vessel-agent
  scheme: https
  tls_config: {ca_file: %[1]q, cert_file: %[3]q, key_file: %[4]q}
  static_configs: [{targets: [%[5]q]}]
- job_name: vessel-apiserver
  scheme: https
  tls_config: {ca_file: %[2]q, cert_file: %[3]q, key_file: %[4]q}
  static_configs: [{targets: [%[6]q]}]
`, e.Cluster.PKI.AgentCA.CertFile, e.Cluster.PKI.ClusterCA.CertFile, cert.CertFile, cert.KeyFile, agent.Host, apiserver.Host)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := launcher.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	logTail := func() string {
		b, _ := os.ReadFile(logFile.Name())
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		return string(b)
	}
	base := "http://" + addr
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("Prometheus not ready within a minute; log:\n%s", logTail())
	}
	t.Logf("Prometheus ready in %v", time.Since(started).Round(time.Millisecond))

	checks := []struct {
		query string
		ok    func(float64) bool
		want  string
	}{
		{`up{job="vessel-agent"}`, func(v float64) bool { return v == 1 }, "1"},
		{`up{job="vessel-apiserver"}`, func(v float64) bool { return v == 1 }, "1"},
		{`sum(rate(vessel_vm_cpu_seconds_total{namespace="team-a",name="busy"}[10s]))`, func(v float64) bool { return v > 0.5 }, "> 0.5"},
		{`sum(rate(vessel_vm_cpu_seconds_total{namespace="team-b",name="idle"}[10s]))`, func(v float64) bool { return v < 0.2 }, "< 0.2"},
	}
	got := make([]float64, len(checks))
	var last error
	err = wait.PollUntilContextTimeout(context.Background(), time.Second, 90*time.Second, true, func(context.Context) (bool, error) {
		for i, c := range checks {
			v, err := instantQuery(base, c.query)
			if err != nil {
				last = err
				return false, nil
			}
			got[i] = v
			if !c.ok(v) {
				last = fmt.Errorf("%s = %v, want %s", c.query, v, c.want)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("PromQL: %v; log:\n%s", last, logTail())
	}
	for i, c := range checks {
		t.Logf("PromQL %s = %.3f", c.query, got[i])
	}
	t.Logf("Prometheus answered %v after it started", time.Since(started).Round(time.Millisecond))
}

// instantQuery evaluates a PromQL query that yields one sample.
func instantQuery(base, query string) (float64, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("query %s: %w", query, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", query, r.Error)
	}
	if len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("query %s: %d samples, want 1", query, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}
