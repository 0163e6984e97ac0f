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

import "errors"

// The failures a VM's owner can act on. Every error this package returns for
// one of them wraps the sentinel, so errors.Is finds it and Reason names it.
var (
	// ErrChecksum says a downloaded image does not have the sha256 it should.
	ErrChecksum = errors.New("sha256 mismatch")
	// ErrDownload says an image could not be downloaded now; trying again
	// later may work.
	ErrDownload = errors.New("image download failed")
	// ErrURLNotAllowed says an image URL leads somewhere downloads may not
	// go: a loopback, link-local, private or other non-public address, a
	// scheme other than http(s), or too many redirects.
	ErrURLNotAllowed = errors.New("image URL not allowed")
	// ErrTooLarge says an image is larger than the node accepts.
	ErrTooLarge = errors.New("image too large")
	// ErrFormatMismatch says a file is not in the format its disk declares.
	ErrFormatMismatch = errors.New("image format mismatch")
	// ErrBackingFile says a qcow2 file names a backing file.
	ErrBackingFile = errors.New("image has a backing file")
	// ErrDataFile says a qcow2 file keeps its data in an external file.
	ErrDataFile = errors.New("image has an external data file")
	// ErrInvalidImage says a file is malformed, encrypted, or could not be
	// inspected within the limits.
	ErrInvalidImage = errors.New("invalid image")
	// ErrOverlayMismatch says a VM's existing overlay was made from another
	// image or format than its disk now declares.
	ErrOverlayMismatch = errors.New("disk overlay belongs to another image")
	// ErrOutsideRoots says a host path is not under any allowed root.
	ErrOutsideRoots = errors.New("outside the allowed host path roots")
	// ErrReadOnlyRoot says a writable disk names a file under a shared root.
	ErrReadOnlyRoot = errors.New("shared host path roots are read-only")
	// ErrNotAFile says a host path is a directory, a character device, a
	// pipe or a socket rather than a file or block device.
	ErrNotAFile = errors.New("not a regular file or block device")
)

// reasons maps each failure to the Provisioned condition's reason, and
// whether it is permanent (waits for a spec change) rather than retried.
var reasons = []struct {
	err       error
	reason    string
	permanent bool
}{
	{ErrChecksum, "ImageChecksumMismatch", true},
	{ErrURLNotAllowed, "ImageURLNotAllowed", true},
	{ErrTooLarge, "ImageTooLarge", true},
	{ErrFormatMismatch, "ImageFormatMismatch", true},
	{ErrBackingFile, "ImageHasBackingFile", true},
	{ErrDataFile, "ImageHasDataFile", true},
	{ErrInvalidImage, "ImageInvalid", true},
	{ErrOverlayMismatch, "DiskImageChanged", true},
	{ErrOutsideRoots, "HostPathNotAllowed", true},
	{ErrReadOnlyRoot, "HostPathNotAllowed", true},
	{ErrNotAFile, "HostPathNotAllowed", true},
	{ErrDownload, "ImageDownloadFailed", false},
}

// Reason names a provisioning failure for the VM's Provisioned condition,
// and says whether it is permanent. It returns "" for errors of other kinds.
func Reason(err error) (reason string, permanent bool) {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason, r.permanent
		}
	}
	return "", false
}
