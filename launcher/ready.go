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
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const readyPollInterval = 200 * time.Millisecond

// waitReady polls url until it answers 200, p exits, or timeout (or ctx)
// runs out. Errors carry the tail of p's log, since that is where the
// reason a component never got ready is.
func waitReady(ctx context.Context, p *process, client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(readyPollInterval)
	defer ticker.Stop()

	last := "no answer yet"
	for {
		if !p.running() {
			return fmt.Errorf("%s exited while starting; end of %s:\n%s", p.name, p.logFile, p.logTail())
		}
		ok, answer := probe(ctx, client, url)
		if ok {
			return nil
		}
		last = answer
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s at %s (last answer: %s): %w; end of %s:\n%s",
				p.name, url, last, ctx.Err(), p.logFile, p.logTail())
		case <-ticker.C:
		}
	}
}

// waitCheck polls check until it succeeds, p exits, or timeout (or ctx)
// runs out, like waitReady for what is not an HTTP endpoint.
func waitCheck(ctx context.Context, p *process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if !p.running() {
			return fmt.Errorf("%s exited while starting; end of %s:\n%s", p.name, p.logFile, p.logTail())
		}
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s (last: %v): %w; end of %s:\n%s", p.name, err, ctx.Err(), p.logFile, p.logTail())
		case <-time.After(readyPollInterval):
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode == http.StatusOK {
		return true, ""
	}
	return false, fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
}
