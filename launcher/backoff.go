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

import "time"

// The supervisor restarts an exited component after a delay that doubles
// from initialBackoff up to maxBackoff while the component keeps failing,
// so that one that cannot start (a port taken, a broken binary) does not
// spin, and one that crashed once is back within a second.
const (
	initialBackoff = time.Second
	maxBackoff     = 30 * time.Second
	// backoffResetAfter: a run at least this long counts as healthy, and
	// the next exit waits initialBackoff again.
	backoffResetAfter = time.Minute
)

// nextBackoff is the delay before the next start, given the previous
// delay (0 before any) and how long the process that just ended ran (0 when
// it did not start at all).
func nextBackoff(previous, ranFor time.Duration) time.Duration {
	if previous == 0 || ranFor >= backoffResetAfter {
		return initialBackoff
	}
	return min(2*previous, maxBackoff)
}
