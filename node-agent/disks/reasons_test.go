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

package disks

import (
	"errors"
	"fmt"
	"testing"
)

func TestReason(t *testing.T) {
	for _, tt := range []struct {
		err       error
		reason    string
		permanent bool
	}{
		{fmt.Errorf("disk root: %w", fmt.Errorf("image x: %w: declared raw", ErrFormatMismatch)), "ImageFormatMismatch", true},
		{fmt.Errorf("download: %w: %w", ErrDownload, errors.New("connection refused")), "ImageDownloadFailed", false},
		{fmt.Errorf("host path: %w", ErrReadOnlyRoot), "HostPathNotAllowed", true},
		{errors.New("something else"), "", false},
	} {
		if reason, permanent := Reason(tt.err); reason != tt.reason || permanent != tt.permanent {
			t.Errorf("Reason(%v) = %q, %v; want %q, %v", tt.err, reason, permanent, tt.reason, tt.permanent)
		}
	}
}
