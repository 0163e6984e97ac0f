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

package pidfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          int // 0: an error
	}{
		{"a PID", "4242", 4242},
		{"a PID and a newline, as daemons write it", "4242\n", 4242},
		{"empty: kill 0 would signal the whole process group", "", 0},
		{"blank", " \n", 0},
		{"PID 0", "0\n", 0},
		{"PID 1, init", "1", 0},
		{"PID -1: every process the caller may signal", "-1", 0},
		{"not a number", "libvirtd\n", 0},
		{"two PIDs", "12 13\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.pid")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			switch {
			case tc.want == 0 && err == nil:
				t.Errorf("Read(%q) = %d, want an error", tc.content, got)
			case tc.want != 0 && (err != nil || got != tc.want):
				t.Errorf("Read(%q) = %d, %v; want %d", tc.content, got, err, tc.want)
			}
		})
	}
	t.Run("no file", func(t *testing.T) {
		if pid, err := Read(filepath.Join(t.TempDir(), "missing.pid")); err == nil {
			t.Errorf("Read of a missing file = %d, want an error", pid)
		}
	})
}
