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

package validation

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// hostPathPolicy decides which host paths a VM may use.
type hostPathPolicy struct {
	// roots are the clean, absolute allowed roots.
	roots []string
	// unchanged are host paths the stored object already uses. They are not
	// checked against roots again, so narrowing the server's roots does not
	// make existing VMs impossible to update (or to stop, which is an
	// update); the agent re-checks every path on the host anyway.
	unchanged map[string]bool
}

func newHostPathPolicy(opts Options) hostPathPolicy {
	return hostPathPolicy{roots: cleanRoots(opts.AllowedHostPathRoots)}
}

var sha256Regexp = regexp.MustCompile(`^[0-9a-f]{64}$`)

// validateImageSource checks an image to download.
func validateImageSource(src *vessel.ImageSource, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateImageURL(src.URL, fldPath.Child("url"))...)

	sumPath := fldPath.Child("sha256")
	switch {
	case src.SHA256 == "":
		allErrs = append(allErrs, field.Required(sumPath, "the download is verified against it"))
	case !sha256Regexp.MatchString(src.SHA256):
		allErrs = append(allErrs, field.Invalid(sumPath, src.SHA256, "must be 64 lowercase hexadecimal characters"))
	}
	return allErrs
}

// validateImageURL checks an http(s) URL. Error values never echo a URL that
// may carry credentials: errors end up in responses, events and audit logs.
func validateImageURL(raw string, fldPath *field.Path) field.ErrorList {
	if raw == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	if len(raw) > MaxURLLength {
		return field.ErrorList{field.TooLong(fldPath, "", MaxURLLength)}
	}
	u, err := url.Parse(raw)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return field.ErrorList{field.Invalid(fldPath, field.OmitValueType{}, fmt.Sprintf("must be a valid URL: %v", err))}
	}
	var allErrs field.ErrorList
	if u.User != nil {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must not contain user information: credentials in a URL are readable by anyone who can read the VM"))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), fmt.Sprintf("scheme must be http or https, not %q", u.Scheme)))
	}
	if u.Hostname() == "" {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must include a host"))
	}
	return allErrs
}

// validateHostPathSource checks a host path lexically. The node agent resolves
// symbolic links on the host and refuses any that lead out of the roots.
func validateHostPathSource(src *vessel.HostPathSource, policy hostPathPolicy, fldPath *field.Path) field.ErrorList {
	pathPath := fldPath.Child("path")
	p := src.Path
	switch {
	case p == "":
		return field.ErrorList{field.Required(pathPath, "")}
	case strings.ContainsRune(p, 0):
		return field.ErrorList{field.Invalid(pathPath, p, "must not contain NUL bytes")}
	case !filepath.IsAbs(p):
		return field.ErrorList{field.Invalid(pathPath, p, "must be an absolute path")}
	case hasBacksteps(p):
		return field.ErrorList{field.Invalid(pathPath, p, "must not contain '..'")}
	case filepath.Clean(p) != p:
		return field.ErrorList{field.Invalid(pathPath, p, fmt.Sprintf("must be a clean path (%q)", filepath.Clean(p)))}
	}
	if policy.unchanged[p] {
		return nil
	}
	if len(policy.roots) == 0 {
		return field.ErrorList{field.Forbidden(fldPath, "this server allows no host paths: it is configured without allowed host path roots")}
	}
	for _, root := range policy.roots {
		if isStrictlyUnder(p, root) {
			return nil
		}
	}
	return field.ErrorList{field.Forbidden(pathPath, fmt.Sprintf("must be under one of the allowed host path roots: %s", strings.Join(policy.roots, ", ")))}
}

// hasBacksteps reports whether a path has a ".." element.
func hasBacksteps(p string) bool {
	for _, elem := range strings.Split(filepath.ToSlash(p), "/") {
		if elem == ".." {
			return true
		}
	}
	return false
}

// isStrictlyUnder reports whether clean path p lies beneath clean directory
// root. The root itself is a directory, never a disk or kernel file.
func isStrictlyUnder(p, root string) bool {
	if root == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, root+"/")
}

// validateFileSource checks a kernel or initrd: exactly one of image and hostPath.
func validateFileSource(src *vessel.FileSource, policy hostPathPolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	numSources := 0
	if src.Image != nil {
		numSources++
		allErrs = append(allErrs, validateImageSource(src.Image, fldPath.Child("image"))...)
	}
	if src.HostPath != nil {
		if numSources > 0 {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child("hostPath"), "may not specify more than one source"))
		} else {
			numSources++
			allErrs = append(allErrs, validateHostPathSource(src.HostPath, policy, fldPath.Child("hostPath"))...)
		}
	}
	if numSources == 0 {
		allErrs = append(allErrs, field.Required(fldPath, "must specify one source: image or hostPath"))
	}
	return allErrs
}

// validateBlankSource checks the size of a new empty disk.
func validateBlankSource(src *vessel.BlankSource, fldPath *field.Path) field.ErrorList {
	sizePath := fldPath.Child("size")
	if src.Size.Sign() <= 0 {
		return field.ErrorList{field.Invalid(sizePath, src.Size.String(), "must be greater than zero")}
	}
	return validateWholeBytesInRange(src.Size, *resource.NewQuantity(1, resource.BinarySI), maxBlankDiskSize, sizePath)
}

// validateCloudInitSource checks a NoCloud seed's size.
func validateCloudInitSource(src *vessel.CloudInitSource, fldPath *field.Path) field.ErrorList {
	if n := len(src.UserData) + len(src.NetworkData); n > MaxCloudInitBytes {
		err := field.TooLong(fldPath, "", MaxCloudInitBytes)
		err.Detail = fmt.Sprintf("userData and networkData together may not be more than %d bytes (got %d)", MaxCloudInitBytes, n)
		return field.ErrorList{err}
	}
	return nil
}
